"""The labels stream: a Kinesis batch of label records → gzip JSON-lines objects in the label layout.

Each Kinesis record (base64, KPL aggregates too: `lambda_fn.records.decode_event`) holds one label as strict JSON
(no NaN or Infinity), in the kit's form `{"id": "ride-42", "label": 17.0, "time": "2026-12-01T11:20:00Z"}`
(`time`: when the truth became known; optional) or SageMaker's ground truth (`{"groundTruthData": {"data": "17.0",
"encoding": "CSV"}, "eventMetadata": {"eventId": "ride-42"}, "eventVersion": "0"}`). A label without a time
arrived at the record's Kinesis arrival time. The id is a non-empty string or an integer of at most
`MAX_ID_CHARS`; the label a finite number, a bool or a non-empty string.

The batch's labels are written in the kit's form, each with its arrival time, as **one object per batch** (per
arrival hour: two only when a batch straddles an hour) under `s3_labels`' layout,
`<prefix>/labels/date=…/hour=…/stream-<shard>-<first sequence>-<last sequence>.jsonl.gz`, so the quality job reads
them as it reads label files. The name is the batch's position: a redelivered batch overwrites its own object,
and a label that comes twice is harmless (the earliest arrival wins).

Failures: a malformed record is **dropped** (counted in `LabelsDropped`, its position and reason logged), never
retried, so it cannot block the shard. Only a failed S3 write is retryable: that object's records are reported in
`batchItemFailures` (the event source needs ReportBatchItemFailures) and Lambda redelivers from the first of them.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from lambda_fn.config import Metric
from lambda_fn.monitoring.labels import Label, LabelError, label_from_object
from lambda_fn.monitoring.s3_labels import put_labels
from lambda_fn.monitoring.s3_store import s3_client, utc
from lambda_fn.records import UserRecord, decode_event, decode_json

MAX_ID_CHARS = 1024
MAX_LABEL_CHARS = 1024
_GZIP_LEVEL = 5
_LOGGED = 20  # dropped records logged per batch (all are counted)


class MetricsLike(Protocol):
    def add_metric(self, name: str, unit: Any, value: float) -> None: ...


class LoggerLike(Protocol):
    def warning(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
    def error(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class Dropped:
    """A label record that can never be written: where it was and why."""

    position: str
    reason: str


@dataclass
class LabelsOutcome:
    """What one batch did: every record was written, dropped, or is in `failures` (to be redelivered)."""

    received: int = 0
    written: int = 0
    dropped: list[Dropped] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # sequence numbers, once each
    errors: list[str] = field(default_factory=list)  # the failed writes' messages

    def response(self) -> dict[str, Any]:
        """Lambda's answer for a Kinesis source with ReportBatchItemFailures."""
        return {"batchItemFailures": [{"itemIdentifier": seq} for seq in self.failures]}


def _check_id(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise LabelError(f"the id is a string or an integer, not {type(value).__name__}")
    text = str(value)
    if not text or len(text) > MAX_ID_CHARS:
        raise LabelError(f"the id has 1 to {MAX_ID_CHARS} characters")
    return text


def _check_value(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise LabelError("the label is not a finite number")
        return value
    if isinstance(value, str) and 0 < len(value) <= MAX_LABEL_CHARS:
        return value
    raise LabelError(f"the label is a finite number, a bool or a string of 1 to {MAX_LABEL_CHARS} characters")


def parse_record(data: bytes, arrival: datetime) -> Label:
    """One record's label (strict JSON, kit or SageMaker form), arrived at its `time` or else `arrival`."""
    try:
        obj = decode_json(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LabelError(f"not strict JSON: {exc}"[:300]) from exc
    if isinstance(obj, dict):  # the raw id's type (the parser below makes every id a string)
        meta = obj.get("eventMetadata")
        if "groundTruthData" in obj and isinstance(meta, dict) and "eventId" in meta:
            _check_id(meta["eventId"])
        elif "groundTruthData" not in obj and "id" in obj:
            _check_id(obj["id"])
    label = label_from_object(obj, arrival)
    when = label.arrived or arrival
    if when.tzinfo is None:
        raise LabelError("the time has no UTC offset (write it as 2026-12-01T11:20:00Z)")
    return Label(_check_id(label.record_id), _check_value(label.value), utc(when))


def label_line(label: Label) -> bytes:
    """A label in the kit's form, with its arrival as `time`."""
    assert label.arrived is not None
    when = utc(label.arrived).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps({"id": label.record_id, "label": label.value, "time": when}, allow_nan=False,
                      ensure_ascii=False, separators=(",", ":")).encode()  # fmt: skip


def _arrival(record: UserRecord, now: datetime) -> datetime:
    if isinstance(record.arrival, int | float) and math.isfinite(record.arrival):
        return datetime.fromtimestamp(float(record.arrival), UTC)
    return now


def decode_labels(
    event: Mapping[str, Any], now: datetime | None = None
) -> tuple[list[tuple[UserRecord, Label]], list[Dropped]]:
    """The batch's labels with their records, and the records dropped with their reasons."""
    now = now or datetime.now(UTC)
    good: list[tuple[UserRecord, Label]] = []
    dropped: list[Dropped] = []
    for record in decode_event(event):
        if record.reason is not None or record.data is None:
            dropped.append(Dropped(record.position, f"{record.reason}: {record.detail}"))
            continue
        try:
            good.append((record, parse_record(record.data, _arrival(record, now))))
        except LabelError as exc:
            dropped.append(Dropped(record.position, str(exc)))
    return good, dropped


def object_name(records: Sequence[UserRecord]) -> str:
    """The batch object's name: its shard and first and last sequence numbers (a redelivery overwrites it)."""
    first, last = records[0], records[-1]
    shard = "".join(c if c.isalnum() or c in "-_" else "_" for c in first.shard_id) or "shard"
    return f"stream-{shard}-{first.sequence_number}-{last.sequence_number}.jsonl.gz"


def write_labels(
    s3: Any, bucket: str, prefix: str, event: Mapping[str, Any], now: datetime | None = None
) -> LabelsOutcome:
    """Decode a batch of label records and write them, one object per arrival hour; never raises for a record."""
    good, dropped = decode_labels(event, now)
    out = LabelsOutcome(received=len(good) + len(dropped), dropped=dropped)
    by_hour: dict[datetime, list[tuple[UserRecord, Label]]] = {}
    for record, label in good:
        assert label.arrived is not None
        by_hour.setdefault(label.arrived.replace(minute=0, second=0, microsecond=0), []).append((record, label))
    failed: set[str] = set()
    for hour, items in sorted(by_hour.items()):
        body = gzip.compress(b"".join(label_line(lb) + b"\n" for _, lb in items), compresslevel=_GZIP_LEVEL, mtime=0)
        try:
            out.keys.append(put_labels(s3, bucket, prefix, object_name([r for r, _ in items]), body, at=hour))
        except (BotoCoreError, ClientError) as exc:
            out.errors.append(f"{type(exc).__name__}: {exc}"[:300])
            failed.update(r.sequence_number for r, _ in items)
            continue
        out.written += len(items)
    out.failures = sorted(failed, key=lambda s: (len(s), s))  # Kinesis sequence numbers are decimal strings
    return out


@lru_cache(maxsize=1)
def labels_s3() -> Any:
    """The labels function's S3 client, created on first use (after the environment is read) and kept."""
    return s3_client()


def report_outcome(outcome: LabelsOutcome, metrics: MetricsLike, logger: LoggerLike) -> dict[str, Any]:
    """Count the batch (`LabelsReceived`, `LabelsWritten`, `LabelsDropped`), log drops and failed writes."""
    for name, value in ((Metric.LABELS_RECEIVED, outcome.received), (Metric.LABELS_WRITTEN, outcome.written),
                        (Metric.LABELS_DROPPED, len(outcome.dropped))):  # fmt: skip
        metrics.add_metric(name=name, unit="Count", value=value)
    if outcome.dropped:
        first = [{"position": d.position, "reason": d.reason} for d in outcome.dropped[:_LOGGED]]
        logger.warning("labels dropped", extra={"dropped": len(outcome.dropped), "first": first})
    if outcome.errors:
        logger.error(
            "labels not written: redelivered", extra={"records": len(outcome.failures), "errors": outcome.errors}
        )
    return outcome.response()
