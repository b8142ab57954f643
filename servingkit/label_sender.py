"""A label file's lines onto the labels stream (`servingkit monitor labels put FILE --stream NAME`).

What a producer does on a deployed stack (`-c monitoring_labels_stream=true`) or on the local cloud (the demo with
`-c monitoring_labels=true -c monitoring_labels_stream=true`): one label per record, the line as it is, partition
key the record id (the labels function files each batch in S3, `lambda_fn.monitoring.label_stream`). Every line is
parsed first as the labels function will parse it (`labels.parse_label_line`), so a bad file sends nothing and
the error names its line; records PutRecords refuses (throttling) are sent again, a bounded number of times.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lambda_fn.monitoring.labels import LabelError, parse_label_line

PUT_RECORDS_MAX = 500  # Kinesis PutRecords: at most 500 records per call
ATTEMPTS = 5


class LabelSendError(ValueError):
    """A label file that cannot be sent (a bad line, or records still refused after the retries)."""


def label_lines(path: Path) -> list[bytes]:
    """The non-blank lines of a .jsonl or .jsonl.gz file, each checked as the labels function reads it."""
    body = path.read_bytes()
    lines = [line for line in (gzip.decompress(body) if path.name.endswith(".gz") else body).splitlines() if line]
    for number, line in enumerate(lines, 1):
        try:
            parse_label_line(line)
        except LabelError as exc:
            raise LabelSendError(f"{path}:{number}: {exc}") from None
    if not lines:
        raise LabelSendError(f"{path}: no label lines")
    return lines


def send_labels(
    kinesis: Any,
    stream: str,
    lines: Sequence[bytes],
    *,
    attempts: int = ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Put each line as one record (partition key: its record id); the number sent."""
    entries = [{"Data": line, "PartitionKey": parse_label_line(line).record_id[:256]} for line in lines]
    for start in range(0, len(entries), PUT_RECORDS_MAX):
        pending = entries[start : start + PUT_RECORDS_MAX]
        for attempt in range(attempts):
            answer = kinesis.put_records(StreamName=stream, Records=pending)
            if not answer.get("FailedRecordCount"):
                break
            pending = [e for e, r in zip(pending, answer["Records"], strict=True) if r.get("ErrorCode")]
            sleep(min(1.0, 0.05 * 2**attempt))
        else:
            raise LabelSendError(f"{len(pending)} labels still refused by {stream} after {attempts} attempts")
    return len(entries)
