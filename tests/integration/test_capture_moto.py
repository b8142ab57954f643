"""Capture and profiles from the stream handler and the API on moto: capture objects under the Hive layout,
profiles the monitor window job reads and summarises, a tampered reference refused at init."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lambda_fn import handler, runtime
from lambda_fn.config import monitor_settings_from
from lambda_fn.model_store import artifact_sha256
from lambda_fn.monitoring import job
from lambda_fn.monitoring.capture import read_lines
from lambda_fn.monitoring.reference import Reference
from lambda_fn.monitoring.release_reference import ReferencePinError
from lambda_fn.monitoring.sampling import sampled
from tests.helpers import FakeContext, kinesis_event, tiny_frame, tiny_pipeline, tiny_row
from tests.integration.conftest import Aws

CAPTURE_BUCKET = "capture-bucket"
CTX = FakeContext()


def _reference() -> Reference:
    x, _ = tiny_frame(3000, seed=7)
    return Reference.build(x, tiny_pipeline().predict(x))


@pytest.fixture
def capture_on(deployed: Aws, tiny_mlflow_dir: Path, clean_env: pytest.MonkeyPatch) -> tuple[Aws, Reference, str]:
    deployed.s3.create_bucket(Bucket=CAPTURE_BUCKET)
    ref = _reference()
    key = "references/tiny/reference.json"
    deployed.s3.put_object(Bucket="models-bucket", Key=key, Body=ref.to_json())
    sha = artifact_sha256(tiny_mlflow_dir)
    for name, value in {
        "MODEL_NAME": "tiny",
        "MODEL_VERSION": "1",
        "CAPTURE_BUCKET": CAPTURE_BUCKET,
        "CAPTURE_SAMPLE_RATE": "0.5",
        "CAPTURE_TIMEOUT_MS": "5000",  # moto in-process is slow on a loaded machine; the bound is tested in unit
        "MONITOR_REFERENCE_URI": f"s3://models-bucket/{key}",
        "MONITOR_REFERENCE_SHA256": ref.sha256,
    }.items():
        clean_env.setenv(name, value)
    runtime.reset()
    return deployed, ref, sha


def _objects(aws: Aws, part: str) -> dict[str, bytes]:
    pages = aws.s3.get_paginator("list_objects_v2").paginate(Bucket=CAPTURE_BUCKET, Prefix="monitoring/")
    keys = [o["Key"] for page in pages for o in page.get("Contents", []) if part in o["Key"]]
    return {k: aws.s3.get_object(Bucket=CAPTURE_BUCKET, Key=k)["Body"].read() for k in keys}


def _predict(instances: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    from servingkit.http_local import build_event

    body = json.dumps({"instances": instances}).encode()
    event = build_event("POST", "/predict", [("Content-Type", "application/json")], body)
    result = handler.api_handler(event, CTX)
    return int(result["statusCode"]), json.loads(result["body"])


def test_stream_and_api_capture_land_in_s3_and_the_monitor_summarises_them(
    capture_on: tuple[Aws, Reference, str],
) -> None:
    aws, ref, sha = capture_on
    items: list[Any] = [{"id": f"r{i}", "features": tiny_row(i)} for i in range(600)]
    items[5] = b"poison"
    assert handler.stream_handler(kinesis_event(items, start_seq=1000), CTX) == {"batchItemFailures": []}
    assert len(aws.output_records()) == 599 and len(aws.dead_letters()) == 1
    for n in range(3):
        status, body = _predict([{"id": f"api-{n}-{j}", "features": tiny_row(j)} for j in range(50)])
        assert status == 200 and len(body["predictions"]) == 50

    captures = _objects(aws, ".jsonl.gz")
    prefix = f"monitoring/capture/model=tiny/sha256={sha}/variant=primary/date="
    assert captures and all(k.startswith(prefix) and "/hour=" in k for k in captures)
    records = [r for body in captures.values() for r in read_lines(body)]
    ids = {r["eventMetadata"]["inferenceId"] for r in records}
    expected = {f"r{i}" for i in range(600) if i != 5} | {f"api-{n}-{j}" for n in range(3) for j in range(50)}
    assert ids == {i for i in expected if sampled(i, 0.5)}
    one = next(r for r in records if r["eventMetadata"]["inferenceId"].startswith("r"))
    assert one["captureData"]["endpointInput"]["data"].keys() == {"zone", "distance", "hour"}
    assert one["model"]["name"] == "tiny" and one["model"]["sha256"] == sha and one["source"]["sequence_number"]
    api = next(r for r in records if r["eventMetadata"]["inferenceId"].startswith("api"))
    assert api["source"]["request_id"] and api["source"]["row"] >= 0

    profiles = _objects(aws, "/profiles/")
    assert len(profiles) == 4  # one per invocation: the batch and three requests
    settings = monitor_settings_from({
        "MONITOR_BUCKET": CAPTURE_BUCKET, "MONITOR_PREFIX": "monitoring", "MONITOR_MODEL_NAME": "tiny",
        "MONITOR_MODEL_SHA256": sha, "MONITOR_MODEL_VERSION": "1", "MONITOR_MIN_ROWS": "100",
        "MONITOR_REFERENCE_URI": "s3://models-bucket/references/tiny/reference.json",
        "MONITOR_REFERENCE_SHA256": ref.sha256,
    })  # fmt: skip
    result = job.run(settings, datetime.now(UTC) + timedelta(minutes=1), metrics=False, s3=aws.s3)
    summary = json.loads(aws.s3.get_object(Bucket=CAPTURE_BUCKET, Key=result.uris["summary.json"].split("/", 3)[3])
                         ["Body"].read())  # fmt: skip
    assert result.status in ("ok", "warn", "alert")
    short = summary["windows"]["short"]
    assert short["profiles"]["read"] == 4 and short["profiles"]["skipped"] == 0
    assert short["variants"]["primary"]["rows"] == 599 + 150


def test_a_tampered_reference_fails_the_cold_start_and_nothing_is_written(
    capture_on: tuple[Aws, Reference, str], clean_env: pytest.MonkeyPatch
) -> None:
    aws, ref, _ = capture_on
    aws.s3.put_object(Bucket="models-bucket", Key="references/tiny/reference.json", Body=ref.to_json() + b" ")
    runtime.reset()
    with pytest.raises(ReferencePinError):
        handler.stream_handler(kinesis_event([{"id": "r1", "features": tiny_row(1)}], start_seq=1), CTX)
    assert aws.output_records() == [] and _objects(aws, "") == {}
    status, body = _predict([{"id": "a", "features": tiny_row(1)}])
    assert status == 503 and "predictions" not in body
