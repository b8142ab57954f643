"""The monitor window job on moto: profiles written with put_profile, drift flagged where injected, the summary
and report in S3, metrics in CloudWatch, backfill once per window, and the Lambda handler."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from lambda_fn.config import MonitorSettings, monitor_settings_from
from lambda_fn.monitoring import job
from lambda_fn.monitoring.reference import Reference
from lambda_fn.monitoring.release_reference import ReferencePinError
from lambda_fn.monitoring.s3_store import Location, S3Store, put_profile
from tests.helpers import handler_context, run_cli
from tests.integration.conftest import monitor_bucket
from tests.monitoring_data import profiles

BUCKET = "monitor-bucket"
MODEL = "tiny"
SHA = "ab" * 32
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@dataclass
class Monitor:
    s3: Any
    cloudwatch: Any
    reference: Reference
    env: dict[str, str]
    location: Location

    @property
    def settings(self) -> MonitorSettings:
        return monitor_settings_from(self.env)

    def write(self, start: datetime, *, shift: float = 0.0, variant: str = "primary") -> None:
        for at, p in profiles(self.reference, start, distance_shift=shift, variant=variant):
            put_profile(self.s3, self.location, p, model={"name": MODEL, "sha256": SHA, "version": "1"}, at=at)

    def keys(self, prefix: str) -> list[str]:
        resp = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return sorted(o["Key"] for o in resp.get("Contents", []))


@pytest.fixture
def monitor(clean_env: pytest.MonkeyPatch) -> Iterator[Monitor]:
    with monitor_bucket(clean_env, BUCKET, MODEL, SHA) as m:
        yield Monitor(m.s3, boto3.client("cloudwatch"), m.reference, m.env, m.location)


def test_put_profile_layout(monitor: Monitor) -> None:
    monitor.write(T0 + timedelta(minutes=1))
    keys = monitor.keys("monitoring/profiles/")
    assert len(keys) == 4
    assert keys[0].startswith(
        f"monitoring/profiles/model={MODEL}/sha256={SHA}/variant=primary/date=2026-12-01/hour=10/"
    )
    assert keys[0].rsplit("/", 1)[1].startswith("20261201T100100Z-")


def test_drifted_window_flags_the_drifted_feature_only(monitor: Monitor) -> None:
    monitor.write(T0 + timedelta(minutes=1))  # window (10:00, 10:15]: unchanged traffic
    monitor.write(T0 + timedelta(minutes=16), shift=15.0)  # window (10:15, 10:30]: longer trips
    calm = job.run(monitor.settings, T0 + timedelta(minutes=15), cloudwatch=monitor.cloudwatch)
    assert calm.drifted() == {"primary": []}
    assert calm.summary["windows"]["short"]["variants"]["primary"]["rows"] == 2000
    drifted = job.run(monitor.settings, T0 + timedelta(minutes=30, seconds=20), cloudwatch=monitor.cloudwatch)
    assert drifted.end == T0 + timedelta(minutes=30)
    assert drifted.drifted() == {"primary": ["distance"]}
    assert drifted.status == "alert"
    short = drifted.summary["windows"]["short"]
    assert short["profiles"] == {"read": 4, "skipped": 0, "hourly": 0, "problems": []}
    assert drifted.summary["windows"]["long"]["variants"]["primary"]["rows"] == 4000
    assert {q["feature"] for q in short["variants"]["primary"]["quality"]} == {"distance"}  # out of range

    base = f"monitoring/reports/model={MODEL}/sha256={SHA}/date=2026-12-01/hour=10/end=20261201T103000Z/"
    assert monitor.keys(base) == [base + "report-long.html", base + "report.html", base + "summary.json"]
    stored = json.loads(monitor.s3.get_object(Bucket=BUCKET, Key=base + "summary.json")["Body"].read())
    assert stored["status"] == "alert" and stored["model"] == {"name": MODEL, "sha256": SHA}
    html = monitor.s3.get_object(Bucket=BUCKET, Key=base + "report.html")["Body"].read().decode()
    assert html.startswith("<!doctype html>") and "distance" in html
    assert drifted.uris["report.html"] == f"s3://{BUCKET}/{base}report.html"


def _datapoints(cw: Any, name: str, dims: dict[str, str], end: datetime) -> list[float]:
    resp = cw.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "m",
                "ReturnData": True,
                "MetricStat": {
                    "Metric": {
                        "Namespace": "ServingKit",
                        "MetricName": name,
                        "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
                    },
                    "Period": 60,
                    "Stat": "Maximum",
                },
            }
        ],
        StartTime=end - timedelta(minutes=5),
        EndTime=end + timedelta(minutes=5),
    )
    return [float(v) for v in resp["MetricDataResults"][0]["Values"]]


def test_metrics_are_published(monitor: Monitor) -> None:
    monitor.write(T0 + timedelta(minutes=16), shift=15.0)
    end = T0 + timedelta(minutes=30)
    result = job.run(monitor.settings, end, cloudwatch=monitor.cloudwatch)
    assert result.metrics == 4 + 3  # three features and the prediction, three totals
    listed = monitor.cloudwatch.list_metrics(Namespace="ServingKit")["Metrics"]
    names = {(m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"]))) for m in listed}
    dims = (("model", MODEL), ("variant", "primary"))
    assert {n for n, _ in names} == {"DriftScore", "DriftedFeatures", "QualityViolations", "MonitorRows"}
    assert {dict(d)["feature"] for n, d in names if n == "DriftScore"} == {"zone", "distance", "hour", "prediction"}
    assert ("DriftedFeatures", dims) in names
    assert _datapoints(monitor.cloudwatch, "DriftedFeatures", dict(dims), end) == [1.0]
    assert _datapoints(monitor.cloudwatch, "MonitorRows", dict(dims), end) == [2000.0]
    psi = _datapoints(monitor.cloudwatch, "DriftScore", {**dict(dims), "feature": "distance"}, end)
    assert psi and psi[0] >= 0.25


def test_backfill_runs_each_window_once(monitor: Monitor) -> None:
    for i in range(4):
        monitor.write(T0 + timedelta(minutes=15 * i + 1), shift=15.0 if i == 2 else 0.0)
    results = job.run_backfill(monitor.settings, T0, T0 + timedelta(hours=1), timedelta(minutes=15))
    assert [r.end for r in results] == [T0 + timedelta(minutes=15 * (i + 1)) for i in range(4)]
    assert [r.drifted()["primary"] for r in results] == [[], [], ["distance"], []]
    assert all(r.metrics == 0 for r in results)  # backfill publishes no metrics by default
    job.run_backfill(monitor.settings, T0, T0 + timedelta(hours=1), timedelta(minutes=15))  # again: replaced
    summaries = [k for k in monitor.keys("monitoring/reports/") if k.endswith("summary.json")]
    assert len(summaries) == 4
    assert monitor.cloudwatch.list_metrics(Namespace="ServingKit")["Metrics"] == []


def test_variants_and_foreign_profiles(monitor: Monitor) -> None:
    monitor.write(T0 + timedelta(minutes=1), shift=15.0, variant="challenger")
    monitor.write(T0 + timedelta(minutes=1))
    other = Reference.build(*_other_columns())
    put_profile(monitor.s3, monitor.location, profiles(other, T0)[0][1], model={"name": MODEL}, at=T0)
    result = job.run(monitor.settings, T0 + timedelta(minutes=15), metrics=False)
    assert result.drifted() == {"challenger": ["distance"], "primary": []}
    assert result.summary["windows"]["short"]["profiles"]["skipped"] == 1  # another reference's profile


def _other_columns() -> tuple[dict[str, Any], Any]:
    from tests.monitoring_data import columns

    return columns(2000, 7)


def test_tampered_reference_is_refused(monitor: Monitor) -> None:
    key = monitor.env["MONITOR_REFERENCE_URI"].split("/", 3)[3]
    body = json.loads(monitor.reference.to_json())
    body["features"][1]["counts"][1] += 1
    monitor.s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(body).encode())
    job._reference.cache_clear()
    try:
        with pytest.raises(ReferencePinError, match="is not the pinned"):
            job.run(monitor.settings, T0, metrics=False)
    finally:
        job._reference.cache_clear()


def test_monitor_handler(monitor: Monitor) -> None:
    from lambda_fn.handler import monitor_handler

    monitor.write(T0 + timedelta(minutes=16), shift=15.0)
    answer = monitor_handler({"time": "2026-12-01T10:30:00Z", "source": "aws.scheduler"}, handler_context())
    assert answer["status"] == "alert"
    assert answer["drifted"] == {"primary": ["distance"]}
    assert answer["metrics"] == 7
    assert answer["report"]["report.html"].endswith("end=20261201T103000Z/report.html")


def test_cli_run_backfill_and_report(monitor: Monitor, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monitor.write(T0 + timedelta(minutes=16), shift=15.0)
    assert run_cli(["monitor", "run", "--at", "2026-12-01T10:30Z", "--no-metrics"]) == 0
    out = capsys.readouterr().out
    assert "alert" in out and "distance" in out and "end=20261201T103000Z/report.html" in out
    assert (
        run_cli(["monitor", "backfill", "--start", "2026-12-01T10:00Z", "--end", "2026-12-01T11:00Z", "--step", "30m"])
        == 0
    )
    assert capsys.readouterr().out.strip().endswith("2 windows")
    saved = tmp_path / "r.html"
    assert run_cli(["monitor", "report", "--at", "2026-12-01T10:30Z", "--out", str(saved)]) == 0
    assert saved.read_text().startswith("<!doctype html>")
    latest = S3Store(monitor.location, monitor.s3).latest_report(before=T0 + timedelta(days=1))
    assert latest is not None and latest.endswith("/date=2026-12-01/hour=11/end=20261201T110000Z")
    assert run_cli(["monitor", "report", "--prefix", "elsewhere", "--out", str(saved), "--long"]) == 1
    assert "no report" in capsys.readouterr().err


def test_cli_settings_errors_name_the_variable(monitor: Monitor, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["monitor", "run", "--reference-sha256", "nope"]) == 1
    assert "MONITOR_REFERENCE_SHA256" in capsys.readouterr().err
