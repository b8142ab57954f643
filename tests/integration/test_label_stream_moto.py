"""The labels stream on moto: `labels_handler` files a Kinesis batch of labels (kit and SageMaker lines, a
malformed one) as one gzip object under <prefix>/labels/, the quality job's S3 reader reads it unchanged and
joins it with captured predictions; an S3 outage reports the batch for redelivery."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from lambda_fn import handler
from lambda_fn.config import get_labels_settings
from lambda_fn.monitoring import quality_job
from lambda_fn.monitoring.label_stream import labels_s3
from lambda_fn.monitoring.labels import Captured
from lambda_fn.monitoring.s3_labels import S3Labels
from tests.helpers import FakeContext, kinesis_event

BUCKET = "monitoring-bucket"
T = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)


@pytest.fixture
def labels_env(clean_env: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        clean_env.setenv("LABELS_BUCKET", BUCKET)
        clean_env.delenv("LABELS_PREFIX", raising=False)
        get_labels_settings.cache_clear()
        labels_s3.cache_clear()
        yield clean_env
        get_labels_settings.cache_clear()
        labels_s3.cache_clear()


class Captures:
    def __init__(self, items: list[Captured]) -> None:
        self.items = items

    def captured(self, start: datetime, end: datetime) -> list[Captured]:
        return [c for c in self.items if start <= c.time < end]


def _at(minutes: float) -> str:
    return (T + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def test_labels_handler_files_a_batch_that_the_quality_job_joins(labels_env: pytest.MonkeyPatch) -> None:
    items = [{"id": f"r{i}", "label": 10.0 + i, "time": _at(20 + i / 10)} for i in range(50)]
    sagemaker = {"groundTruthData": {"data": "99.0", "encoding": "CSV"}, "eventMetadata": {"eventId": "r50"},
                 "eventVersion": "0", "time": "ignored"}  # fmt: skip
    event = kinesis_event([*items, b"{broken", sagemaker], start_seq=7000)
    assert handler.labels_handler(event, FakeContext()) == {"batchItemFailures": []}

    s3 = boto3.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="monitoring/labels/")["Contents"]]
    # The SageMaker line has no time: it arrived when Kinesis got it (the test event's stamps, in 2025).
    assert (
        len(keys) == 2
        and "monitoring/labels/date=2026-12-01/hour=11/stream-shardId-000000000000-7000-7049.jsonl.gz" in keys
    )
    obj = s3.get_object(Bucket=BUCKET, Key=keys[-1])
    assert obj["ContentEncoding"] == "gzip"

    batch = S3Labels(BUCKET, "monitoring", s3).labels(T, T + timedelta(hours=1))
    assert batch.objects == 1 and batch.bad_lines == 0 and len(batch.labels) == 50
    assert batch.labels["r3"].value == 13.0 and batch.labels["r3"].arrived == T + timedelta(minutes=20.3)

    # predictions at T+5 min, off by +2 for even ids and -2 for odd: MAE 2, RMSE 2; r60 has no label.
    captured = [Captured(f"r{i}", 10.0 + i + (2 if i % 2 == 0 else -2), T + timedelta(minutes=5), "1", "primary")
                for i in (*range(50), 60)]  # fmt: skip
    config = quality_job.QualityConfig(delay=timedelta(minutes=30), span=timedelta(minutes=30))
    quality = quality_job.evaluate(Captures(captured), S3Labels(BUCKET, "monitoring", s3), T + timedelta(minutes=60),
                                   config)  # fmt: skip
    assert quality["counts"]["joined"] == 50 and quality["counts"]["missing"] == 1
    assert quality["variants"]["primary"]["mae"] == pytest.approx(2.0)


def test_an_s3_outage_reports_the_batch_for_redelivery(labels_env: pytest.MonkeyPatch) -> None:
    labels_env.setenv("LABELS_BUCKET", "no-such-bucket")
    get_labels_settings.cache_clear()
    event = kinesis_event([{"id": "a", "label": 1, "time": _at(1)}, {"id": "b", "label": 2, "time": _at(2)}], 900)
    assert handler.labels_handler(event, FakeContext()) == {
        "batchItemFailures": [{"itemIdentifier": "900"}, {"itemIdentifier": "901"}]
    }
