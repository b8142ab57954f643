"""Model quality from late labels on moto: a stream batch captured by the real emitter (ids hashed with a secret),
labels uploaded later in the kit's and SageMaker's formats (on time, late, missing), the window job joins them,
writes the quality into the summary and the report and publishes ModelQuality / LabelledRows /
QualityDegradation (read back with get_metric_data); the handler and the CLI run the same job."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from lambda_fn import handler, runtime
from lambda_fn.config import MONITOR_ENV_FIELDS, get_monitor_settings, monitor_settings_from
from lambda_fn.model_store import artifact_sha256
from lambda_fn.monitoring import job
from lambda_fn.monitoring.capture import read_lines
from lambda_fn.monitoring.reference import Reference
from lambda_fn.monitoring.s3_labels import put_labels
from lambda_fn.monitoring.sampling import hash_id
from lambda_fn.monitoring.setup import key_from_secret
from tests.helpers import FakeContext, handler_context, kinesis_event, run_cli, tiny_frame, tiny_pipeline, tiny_row
from tests.integration.conftest import Aws

BUCKET = "monitoring-bucket"
SECRET = "k3y-for-hashing-ids-0123456789"
CTX = FakeContext()
DELAY = timedelta(minutes=30)


@dataclass
class Scored:
    aws: Aws
    env: dict[str, str]
    captured: dict[str, float]  # raw id → its prediction, for the captured records
    scored_at: datetime


def _objects(s3: Any, prefix: str) -> dict[str, bytes]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return {k: s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys}


@pytest.fixture
def scored(deployed: Aws, tiny_mlflow_dir: Path, clean_env: pytest.MonkeyPatch) -> Scored:
    aws = deployed
    for name in MONITOR_ENV_FIELDS:
        clean_env.delenv(name, raising=False)
    aws.s3.create_bucket(Bucket=BUCKET)
    arn = boto3.client("secretsmanager").create_secret(Name="capture-id-key", SecretString=SECRET)["ARN"]
    x, _ = tiny_frame(3000, seed=7)
    ref = Reference.build(x, tiny_pipeline().predict(x))
    aws.s3.put_object(Bucket=BUCKET, Key="references/reference.json", Body=ref.to_json())
    ref_uri = f"s3://{BUCKET}/references/reference.json"
    sha = artifact_sha256(tiny_mlflow_dir)
    for name, value in {
        "MODEL_NAME": "tiny", "MODEL_VERSION": "1", "CAPTURE_BUCKET": BUCKET, "CAPTURE_SAMPLE_RATE": "0.5",
        "CAPTURE_TIMEOUT_MS": "5000", "CAPTURE_ID_KEY_SECRET_ARN": arn,
        "MONITOR_REFERENCE_URI": ref_uri, "MONITOR_REFERENCE_SHA256": ref.sha256,
    }.items():  # fmt: skip
        clean_env.setenv(name, value)
    runtime.reset()
    items = [{"id": f"r{i}", "features": tiny_row(i)} for i in range(400)]
    assert handler.stream_handler(kinesis_event(items, start_seq=1000), CTX) == {"batchItemFailures": []}
    scored_at = datetime.now(UTC)
    predictions = {r["id"]: float(r["prediction"]) for r in aws.output_records()}
    key = key_from_secret(SECRET)
    raw_of = {hash_id(f"r{i}", key): f"r{i}" for i in range(400)}
    records = [r for body in _objects(aws.s3, "monitoring/capture/model=").values() for r in read_lines(body)]
    captured = {raw_of[r["eventMetadata"]["inferenceId"]]: predictions[raw_of[r["eventMetadata"]["inferenceId"]]]
                for r in records}  # fmt: skip
    assert 100 < len(captured) < 300  # hashed ids only in the capture, about half of them sampled
    env = {
        "MONITOR_BUCKET": BUCKET, "MONITOR_MODEL_NAME": "tiny", "MONITOR_MODEL_SHA256": sha,
        "MONITOR_MODEL_VERSION": "1", "MONITOR_MIN_ROWS": "100", "MONITOR_REFERENCE_URI": ref_uri,
        "MONITOR_REFERENCE_SHA256": ref.sha256, "MONITOR_LABELS": "true",
        "MONITOR_LABEL_DELAY_MINUTES": "30", "MONITOR_LABEL_SPAN_MINUTES": "60",
        "MONITOR_TRAINING_METRICS": json.dumps({"mae": 1.0, "rmse": 1.0}), "MONITOR_ID_KEY_SECRET_ARN": arn,
    }  # fmt: skip
    return Scored(aws, env, captured, scored_at)


def _upload_labels(s: Scored, tmp_path: Path) -> dict[str, set[str]]:
    """On time (kit lines, SageMaker lines), late, and missing; labels = prediction + 2 (MAE 2 on time)."""
    ids = sorted(s.captured)
    on_time, sagemaker, late = set(ids[0::4]), set(ids[1::4]), set(ids[2::4])
    missing = set(ids[3::4])
    t = s.scored_at

    def kit(rid: str, at: datetime) -> str:
        return json.dumps({"id": rid, "label": s.captured[rid] + 2.0, "time": at.isoformat()})

    orphans = [json.dumps({"id": "never-scored", "label": 1.0, "time": t.isoformat()})]
    body = "\n".join([kit(r, t + timedelta(minutes=5)) for r in sorted(on_time)] + orphans) + "\n"
    put_labels(s.aws.s3, BUCKET, "monitoring", "on-time.jsonl", body.encode(), t + timedelta(minutes=5))
    late_body = gzip.compress(("\n".join(kit(r, t + timedelta(minutes=35)) for r in sorted(late)) + "\n").encode())
    put_labels(s.aws.s3, BUCKET, "monitoring", "late.jsonl.gz", late_body, t + timedelta(minutes=35))
    gt = tmp_path / "ground-truth.jsonl"  # SageMaker's format; its arrival is the upload's time (now)
    gt.write_text("".join(json.dumps({"groundTruthData": {"data": str(s.captured[r] + 2.0), "encoding": "CSV"},
                                      "eventMetadata": {"eventId": r}, "eventVersion": "0"}) + "\n"
                          for r in sorted(sagemaker)))  # fmt: skip
    assert run_cli(["monitor", "labels", "put", str(gt), "--bucket", BUCKET]) == 0
    return {"joined": on_time | sagemaker, "late": late, "missing": missing}


def _datapoints(cw: Any, name: str, dims: dict[str, str], end: datetime) -> list[float]:
    metric = {"Namespace": "ServingKit", "MetricName": name,
              "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()]}  # fmt: skip
    resp = cw.get_metric_data(
        MetricDataQueries=[{"Id": "m", "ReturnData": True,
                            "MetricStat": {"Metric": metric, "Period": 60, "Stat": "Maximum"}}],
        StartTime=end - timedelta(minutes=5),
        EndTime=end + timedelta(minutes=5),
    )  # fmt: skip
    return [float(v) for v in resp["MetricDataResults"][0]["Values"]]


def test_late_labels_join_the_capture_and_quality_is_published(scored: Scored, tmp_path: Path) -> None:
    expected = _upload_labels(scored, tmp_path)
    cw = boto3.client("cloudwatch")
    result = job.run(monitor_settings_from(scored.env), scored.scored_at + timedelta(minutes=40), cloudwatch=cw)

    key = result.uris["summary.json"].split("/", 3)[3]
    summary = json.loads(scored.aws.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    q = summary["quality"]
    c = q["counts"]
    assert c["captured"] == len(scored.captured)
    assert (c["joined"], c["late"], c["missing"], c["pending"]) == (
        len(expected["joined"]), len(expected["late"]), len(expected["missing"]), 0
    )  # fmt: skip
    assert c["orphans"] >= 1 and c["label_objects"] == 3 and c["label_lines_unreadable"] == 0
    primary = q["variants"]["primary"]
    assert primary["n"] == len(expected["joined"])
    assert primary["mae"] == pytest.approx(2.0) and primary["rmse"] == pytest.approx(2.0)
    assert primary["degradation"] == {"ratios": {"mae": pytest.approx(2.0), "rmse": pytest.approx(2.0)},
                                      "worst": pytest.approx(2.0)}  # fmt: skip
    assert summary["windows"]["short"]["labels"]["metrics"][0]["model_version"] == "1"
    html = scored.aws.s3.get_object(Bucket=BUCKET, Key=key.replace("summary.json", "report.html"))["Body"].read()
    assert b"Model quality from labels" in html and f"joined {c['joined']}".encode() in html

    dims = {"model": "tiny", "variant": "primary"}
    assert _datapoints(cw, "ModelQuality", dims | {"metric": "mae"}, result.end) == [pytest.approx(2.0)]
    assert _datapoints(cw, "ModelQuality", dims | {"metric": "rmse"}, result.end) == [pytest.approx(2.0)]
    assert _datapoints(cw, "LabelledRows", dims, result.end) == [float(len(expected["joined"]))]
    assert _datapoints(cw, "QualityDegradation", dims, result.end) == [pytest.approx(2.0)]
    names = {m["MetricName"] for m in cw.list_metrics(Namespace="ServingKit")["Metrics"]}
    assert {"ModelQuality", "LabelledRows", "QualityDegradation"} <= names  # no profiles in the short window


def test_without_the_id_key_hashed_captures_join_nothing(scored: Scored, tmp_path: Path) -> None:
    _upload_labels(scored, tmp_path)
    env = {k: v for k, v in scored.env.items() if k != "MONITOR_ID_KEY_SECRET_ARN"}
    result = job.run(monitor_settings_from(env), scored.scored_at + timedelta(minutes=40), metrics=False)
    c = result.summary["quality"]["counts"]
    assert c["joined"] == 0 and c["missing"] == len(scored.captured)


def test_labels_off_adds_nothing(scored: Scored) -> None:
    env = scored.env | {"MONITOR_LABELS": "false"}
    result = job.run(monitor_settings_from(env), scored.scored_at + timedelta(minutes=40), metrics=False)
    assert "quality" not in result.summary and result.summary["windows"]["short"]["labels"]["metrics"] == []


def test_handler_and_cli_compute_quality(
    scored: Scored, tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lambda_fn.handler import monitor_handler

    expected = _upload_labels(scored, tmp_path)
    for k, v in scored.env.items():
        clean_env.setenv(k, v)
    get_monitor_settings.cache_clear()
    at = (scored.scored_at + timedelta(minutes=40)).isoformat()
    try:
        answer = monitor_handler({"at": at}, handler_context())
    finally:
        get_monitor_settings.cache_clear()
    assert answer["labelled"] == len(expected["joined"])
    capsys.readouterr()
    assert run_cli(["monitor", "run", "--at", at, "--no-metrics"]) == 0
    out = capsys.readouterr().out
    assert f"labels: joined {len(expected['joined'])}, late {len(expected['late'])}" in out
    assert "vs training {'primary': 2.0" in out
    assert run_cli(["monitor", "run", "--at", at, "--no-metrics", "--labels", "false"]) == 0
    assert "labels:" not in capsys.readouterr().out  # the option overrides MONITOR_LABELS


def test_the_degradation_alarm_rule_on_the_published_datapoints(scored: Scored, tmp_path: Path) -> None:
    """The stack's QualityDegradation alarm, IF(LabelledRows >= N, QualityDegradation, 0) > ratio, evaluated
    in-process (moto never evaluates alarms) on what the run published: a 2x ratio alarms once the run has N
    labelled rows, and never on fewer."""
    from servingkit.monitor_alarm import AlarmRule, first_alarm, gated

    expected = _upload_labels(scored, tmp_path)
    cw = boto3.client("cloudwatch")
    result = job.run(monitor_settings_from(scored.env), scored.scored_at + timedelta(minutes=40), cloudwatch=cw)
    dims = [{"Name": "model", "Value": "tiny"}, {"Name": "variant", "Value": "primary"}]
    period = timedelta(minutes=15)

    def points(name: str) -> list[tuple[datetime, float]]:
        metric = {"Namespace": "ServingKit", "MetricName": name, "Dimensions": dims}
        resp = cw.get_metric_data(
            MetricDataQueries=[{"Id": "m", "MetricStat": {"Metric": metric, "Period": 900, "Stat": "Maximum"}}],
            StartTime=result.end - period, EndTime=result.end + period,
        )  # fmt: skip
        (r,) = resp["MetricDataResults"]
        return list(zip(r["Timestamps"], (float(v) for v in r["Values"]), strict=True))

    ratio, labelled = points("QualityDegradation"), points("LabelledRows")
    joined = len(expected["joined"])
    assert [v for _, v in labelled] == [float(joined)] and [v for _, v in ratio] == [pytest.approx(2.0)]
    rule = AlarmRule(period, threshold=1.2, strict=True)
    assert first_alarm(gated(ratio, labelled, joined, period), rule) is not None
    assert first_alarm(gated(ratio, labelled, joined + 1, period), rule) is None
