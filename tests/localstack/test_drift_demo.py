"""`servingkit demo --drift` against the tier's LocalStack (its session fixture: one LocalStack for the tier): the
capture, profiles, labels and reports in LocalStack's S3, the monitor's metrics in its CloudWatch; the injected
features flagged and the others not, the quality from late labels, the report object in S3, the alarm (evaluated
in-process on the datapoints read back from LocalStack) within 5 minutes of stream time."""

from __future__ import annotations

from pathlib import Path

import boto3

from lambda_fn.monitoring.s3_store import split_s3_uri
from servingkit.drift_demo import INJECTED, DriftOptions, run
from servingkit.monitor_alarm import AlarmRule
from tests.conftest import ROOT


def test_drift_demo_on_localstack(pointed, tmp_path: Path) -> None:
    opts = DriftOptions(records=3600, endpoint_url=pointed.endpoint, target="localstack", out_dir=tmp_path,
                        model_dir=ROOT / "build" / "model", release=ROOT / "build" / "release.json")  # fmt: skip
    result = run(opts, log=print)

    drifted = {r["feature"] for r in result.drift if r["drifted"]}
    assert set(INJECTED) <= drifted and not {"pickup_hour", "pickup_dow"} & drifted
    assert result.quality["variants"]["primary"]["n"] > 100
    assert result.alarm_at is not None and result.delay_seconds is not None and 0 < result.delay_seconds < 300
    assert result.rule == AlarmRule(period=result.rule.period)
    assert result.backfill and [b["drifted"] for b in result.backfill] == [t["drifted"] for t in result.ticks[:-1]]
    bucket, key = split_s3_uri(result.report_uris["report.html"])
    s3 = boto3.client("s3", endpoint_url=pointed.endpoint, region_name="us-east-1")
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentType"].startswith("text/html") and head["ContentLength"] > 1000
