"""The labels stream's core: strict decoding of label records, one gzip object per batch in the label layout,
malformed records dropped (counted, logged) and only failed S3 writes reported for redelivery."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambda_fn.config import ConfigError, Metric, labels_settings_from
from lambda_fn.monitoring.label_stream import MAX_ID_CHARS, decode_labels, report_outcome, write_labels
from lambda_fn.monitoring.labels import Label, read_labels
from tests.helpers import kinesis_event, kinesis_record, kpl_aggregate

PREFIX = "monitoring"
ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 1, 11, 30, tzinfo=UTC)


class FakeS3:
    """put_object into a dict; `fail_hours` makes puts under those label hours raise a throttling error."""

    def __init__(self, fail_hours: tuple[str, ...] = ()) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.fail_hours = fail_hours

    def put_object(self, **kw: Any) -> dict[str, Any]:
        if any(f"/{h}/" in kw["Key"] for h in self.fail_hours):
            raise ClientError(
                {"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "PutObject"
            )
        self.objects[kw["Key"]] = kw
        return {}

    def labels(self) -> dict[str, Label]:
        out: dict[str, Label] = {}
        for key, kw in self.objects.items():
            assert key.endswith(".jsonl.gz") and kw["ContentEncoding"] == "gzip"
            found, bad = read_labels(gzip.decompress(kw["Body"]).splitlines())
            assert bad == 0
            out.update(found)
        return out


class Recorder:
    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}
        self.logs: list[tuple[str, str, dict[str, Any]]] = []

    def add_metric(self, name: str, unit: Any, value: float) -> None:
        self.metrics[name] = value

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.logs.append(("warning", msg, kwargs.get("extra", {})))

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.logs.append(("error", msg, kwargs.get("extra", {})))


def _sagemaker(rid: str, data: str, encoding: str = "CSV") -> dict[str, Any]:
    return {"groundTruthData": {"data": data, "encoding": encoding}, "eventMetadata": {"eventId": rid},
            "eventVersion": "0"}  # fmt: skip


def test_kit_and_sagemaker_records_become_one_gzip_object_in_the_label_layout() -> None:
    event = kinesis_event([
        {"id": "ride-1", "label": 17.0, "time": "2026-12-01T11:20:00Z"},
        {"id": 42, "label": 3, "time": "2026-12-01T11:21:00.5+00:00"},
        _sagemaker("ride-3", "23.5,extra"),
        _sagemaker("ride-4", '{"label": 1}', "JSON"),
    ], start_seq=500)  # fmt: skip
    s3 = FakeS3()
    out = write_labels(s3, "bucket", PREFIX, event, now=NOW)
    assert (out.received, out.written, out.dropped, out.failures) == (4, 4, [], [])
    assert out.response() == {"batchItemFailures": []}
    # SageMaker's lines carry no time: they arrived when Kinesis got them (the test event's arrival stamps).
    arrival = datetime.fromtimestamp(1_760_000_000.0 + 502 / 1000, UTC)
    hours = {"date=2026-12-01/hour=11", f"date={arrival:%Y-%m-%d}/hour={arrival:%H}"}
    assert sorted(s3.objects) == sorted(
        f"{PREFIX}/labels/{h}/stream-shardId-000000000000-{first}-{last}.jsonl.gz"
        for h, (first, last) in zip(sorted(hours), [(502, 503), (500, 501)], strict=True)
    )
    got = s3.labels()
    assert got["ride-1"] == Label("ride-1", 17.0, datetime(2026, 12, 1, 11, 20, tzinfo=UTC))
    assert got["42"] == Label("42", 3, datetime(2026, 12, 1, 11, 21, 0, 500_000, tzinfo=UTC))
    assert got["ride-3"].value == 23.5 and got["ride-4"].value == 1
    assert got["ride-3"].arrived is not None and abs((got["ride-3"].arrived - arrival).total_seconds()) < 0.01


def test_one_object_per_batch_and_a_redelivered_batch_overwrites_it() -> None:
    event = kinesis_event([{"id": f"r{i}", "label": i, "time": "2026-12-01T11:00:00Z"} for i in range(300)])
    s3 = FakeS3()
    first = write_labels(s3, "bucket", PREFIX, event, now=NOW)
    again = write_labels(s3, "bucket", PREFIX, event, now=NOW)
    assert len(s3.objects) == 1 and first.keys == again.keys
    assert len(s3.labels()) == 300


MALFORMED = [
    (b"{not json", "not strict JSON"),
    (b'{"id": "a", "label": NaN}', "not strict JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"id": "a"}', "has id and label"),
    (b'{"id": null, "label": 1}', "string or an integer"),
    (b'{"id": true, "label": 1}', "string or an integer"),
    (b'{"id": "", "label": 1}', "1 to"),
    (json.dumps({"id": "x" * (MAX_ID_CHARS + 1), "label": 1}).encode(), "1 to"),
    (b'{"id": "a", "label": null}', "finite number"),
    (b'{"id": "a", "label": {"v": 1}}', "finite number"),
    (b'{"id": "a", "label": 1, "time": "yesterday"}', "ISO 8601"),
    (b'{"id": "a", "label": 1, "time": "2026-12-01T11:00:00"}', "UTC offset"),
    (json.dumps(_sagemaker("a", "1", "XML")).encode(), "encoding"),
    (json.dumps({"groundTruthData": {"data": "1"}}).encode(), "ground truth without"),
    (json.dumps({**_sagemaker("a", "1"), "eventMetadata": {"eventId": None}}).encode(), "string or an integer"),
    (b"\xff\xfe\x00", "not strict JSON"),
]


@pytest.mark.parametrize(("data", "reason"), MALFORMED)
def test_a_malformed_record_is_dropped_with_its_reason_and_never_blocks_the_shard(data: bytes, reason: str) -> None:
    good = [{"id": "ok-1", "label": 1.5, "time": "2026-12-01T11:00:00Z"}]
    event = kinesis_event([data, *good], start_seq=10)
    s3 = FakeS3()
    out = write_labels(s3, "bucket", PREFIX, event, now=NOW)
    assert out.failures == [] and out.written == 1 and out.received == 2
    assert [d.position for d in out.dropped] == ["shardId-000000000000:10"]
    assert reason in out.dropped[0].reason
    assert set(s3.labels()) == {"ok-1"}


def test_not_base64_and_a_corrupt_kpl_aggregate_are_dropped() -> None:
    corrupt = bytearray(kpl_aggregate([{"id": "a", "label": 1}]))
    corrupt[-1] ^= 0xFF
    event = {"Records": [kinesis_record("@@not base64@@", 1), kinesis_record(bytes(corrupt), 2)]}
    out = write_labels(FakeS3(), "bucket", PREFIX, event, now=NOW)
    assert out.written == 0 and out.failures == [] and len(out.dropped) == 2
    assert out.dropped[0].reason.startswith("not_base64") and out.dropped[1].reason.startswith("kpl_corrupt")


def test_kpl_aggregated_labels_are_all_written() -> None:
    agg = kpl_aggregate([{"id": f"k{i}", "label": i, "time": "2026-12-01T11:05:00Z"} for i in range(5)])
    s3 = FakeS3()
    out = write_labels(s3, "bucket", PREFIX, {"Records": [kinesis_record(agg, 7)]}, now=NOW)
    assert out.written == 5 and set(s3.labels()) == {f"k{i}" for i in range(5)}


def test_a_failed_write_reports_only_its_records_for_redelivery() -> None:
    times = ["2026-12-01T10:59:59Z", "2026-12-01T11:00:01Z", "2026-12-01T11:00:02Z"]
    items: list[Any] = [{"id": rid, "label": i, "time": t} for i, (rid, t) in enumerate(zip("abc", times, strict=True))]
    items.append(b"junk")
    s3 = FakeS3(fail_hours=("hour=11",))
    out = write_labels(s3, "bucket", PREFIX, kinesis_event(items, start_seq=100), now=NOW)
    assert out.response() == {"batchItemFailures": [{"itemIdentifier": "101"}, {"itemIdentifier": "102"}]}
    assert out.written == 1 and len(out.dropped) == 1 and "SlowDown" in out.errors[0]
    assert set(s3.labels()) == {"a"}


def test_every_record_is_written_dropped_or_redelivered() -> None:
    items: list[Any] = [{"id": f"r{i}", "label": i, "time": f"2026-12-01T1{i % 3}:00:00Z"} for i in range(30)]
    items[5], items[17] = b"{", {"id": "x", "label": None}
    out = write_labels(FakeS3(fail_hours=("hour=12",)), "bucket", PREFIX, kinesis_event(items, start_seq=0), now=NOW)
    redelivered = {int(f) for f in out.failures}
    assert out.written + len(out.dropped) + len(redelivered) == out.received == 30
    assert redelivered == {i for i in range(30) if i % 3 == 2 and i not in (5, 17)}


def test_report_outcome_counts_and_logs() -> None:
    event = kinesis_event([b"{", {"id": "a", "label": 1, "time": "2026-12-01T11:00:00Z"}], start_seq=3)
    out = write_labels(FakeS3(), "bucket", PREFIX, event, now=NOW)
    rec = Recorder()
    assert report_outcome(out, rec, rec) == {"batchItemFailures": []}
    assert rec.metrics == {Metric.LABELS_RECEIVED: 2, Metric.LABELS_WRITTEN: 1, Metric.LABELS_DROPPED: 1}
    level, msg, extra = rec.logs[0]
    assert (level, msg, extra["dropped"]) == ("warning", "labels dropped", 1)
    assert extra["first"][0]["position"] == "shardId-000000000000:3"


def test_decode_uses_now_when_kinesis_gives_no_arrival() -> None:
    record = kinesis_record(json.dumps(_sagemaker("z", "4")).encode(), 1)
    del record["kinesis"]["approximateArrivalTimestamp"]
    good, dropped = decode_labels({"Records": [record]}, now=NOW)
    assert dropped == [] and good[0][1] == Label("z", 4.0, NOW)


def test_labels_settings() -> None:
    s = labels_settings_from({"LABELS_BUCKET": "my-bucket", "LABELS_PREFIX": "/mon/"})
    assert (s.labels_bucket, s.labels_prefix) == ("my-bucket", "mon")
    assert labels_settings_from({"LABELS_BUCKET": "my-bucket"}).labels_prefix == "monitoring"
    with pytest.raises(ConfigError, match="LABELS_BUCKET"):
        labels_settings_from({})
    with pytest.raises(ConfigError, match="LABELS_BUCKET='Bad_Bucket'"):
        labels_settings_from({"LABELS_BUCKET": "Bad_Bucket"})


def _cold_start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Import the handler as Lambda does for the labels function (its settings read at init), in a fresh process."""
    keep = {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "PATH", "HOME", "POWERTOOLS_"))}
    full = {**keep, "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9", "_HANDLER": "lambda_fn.handler.labels_handler",
            "PYTHONPATH": str(ROOT), **env}  # fmt: skip
    code = "import lambda_fn.handler"
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, check=False)


def test_the_labels_function_starts_without_a_model_and_fails_without_its_bucket() -> None:
    ok = _cold_start({"LABELS_BUCKET": "kit-monitoring"})  # no MODEL_URI: the scorer's settings would refuse it
    assert ok.returncode == 0, ok.stderr
    bad = _cold_start({})
    assert bad.returncode != 0 and "LABELS_BUCKET" in bad.stderr
