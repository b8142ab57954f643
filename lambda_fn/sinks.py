"""Where results go: the output stream (PutRecords) and the dead-letter queue (SQS), with retries.

Both sinks chunk within the service limits, retry only the entries the service reports as failed
(throttling, internal errors) with exponential backoff and full jitter, and return the references
of entries that still failed so the caller can report them to Lambda instead of losing them. An entry
the service refuses for its content (SQS `SenderFault`) is never retried: the same body would be refused
on every redelivery and hold the shard forever; it is returned as rejected for the caller to replace.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

KINESIS_MAX_RECORDS = 500
KINESIS_MAX_BYTES = 5 * 1024 * 1024
KINESIS_MAX_RECORD_BYTES = 1024 * 1024
SQS_MAX_ENTRIES = 10
SQS_MAX_BYTES = 256 * 1024
_MAX_DELAY_S = 2.0
_RETRYABLE_CALL_ERRORS = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "LimitExceededException",
        "KMSThrottlingException",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "RequestThrottled",
    }
)
# SendMessageBatch errors that are about the messages themselves (their size or characters): the request
# is split so that only the message at fault is refused (suffix match: botocore may prefix the query code).
_SQS_CONTENT_ERRORS = frozenset({"BatchRequestTooLong", "InvalidMessageContents", "InvalidParameterValue"})


class Entry(NamedTuple):
    """One message to write; `ref` is the caller's handle (the user record's index).

    A tuple, not a frozen dataclass: tens of thousands are built per batch and tuples are cheapest.
    """

    ref: int
    data: bytes
    key: str


@dataclass(slots=True)
class PutOutcome:
    """Refs of entries not written: `failed` (retries ran out: report them), `too_large` (over the record
    limit), `rejected` (refused for their content, with the service's reason: replace them, never resend)."""

    failed: list[int] = field(default_factory=list)
    too_large: list[int] = field(default_factory=list)
    rejected: dict[int, str] = field(default_factory=dict)
    retries: int = 0


class Sink(Protocol):
    def put(self, entries: Sequence[Entry]) -> PutOutcome: ...


@dataclass(slots=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay_s: float = 0.05
    sleep: Callable[[float], None] = time.sleep

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(_MAX_DELAY_S, self.base_delay_s * (2**attempt)))


def chunks(entries: Sequence[Entry], max_count: int, max_bytes: int, overhead: int = 0) -> Iterator[list[Entry]]:
    """Split into requests that respect both the count and the payload size limits."""
    batch: list[Entry] = []
    size = 0
    for e in entries:
        n = len(e.data) + len(e.key.encode()) + overhead
        if batch and (len(batch) >= max_count or size + n > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(e)
        size += n
    if batch:
        yield batch


def _call_error_code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", "")) or None
    return None


def _send_with_retries(
    chunk: list[Entry],
    send: Callable[[list[Entry]], list[bool]],
    policy: RetryPolicy,
    outcome: PutOutcome,
) -> None:
    """Send, then resend only entries reported failed, until none fail or attempts run out."""
    pending = chunk
    for attempt in range(policy.max_attempts):
        if attempt:
            outcome.retries += len(pending)
            policy.sleep(policy.delay(attempt))
        try:
            ok = send(pending)
        except Exception as exc:
            from botocore.exceptions import ConnectionError as BotoConnectionError

            code = _call_error_code(exc)
            if code in _RETRYABLE_CALL_ERRORS or isinstance(exc, BotoConnectionError):
                continue
            raise
        pending = [e for e, good in zip(pending, ok, strict=True) if not good]
        if not pending:
            return
    outcome.failed.extend(e.ref for e in pending)


class KinesisSink:
    """PutRecords in chunks of at most 500 records and 5 MiB."""

    def __init__(self, client: Any, stream_name: str, policy: RetryPolicy | None = None) -> None:
        self._client = client
        self._stream = stream_name
        self._policy = policy or RetryPolicy()

    def _send(self, entries: list[Entry]) -> list[bool]:
        resp = self._client.put_records(
            StreamName=self._stream,
            Records=[{"Data": e.data, "PartitionKey": e.key} for e in entries],
        )
        return ["ErrorCode" not in r for r in resp["Records"]]

    def put(self, entries: Sequence[Entry]) -> PutOutcome:
        outcome = PutOutcome()
        fit = []
        for e in entries:
            if len(e.data) + len(e.key.encode()) > KINESIS_MAX_RECORD_BYTES:
                outcome.too_large.append(e.ref)
            else:
                fit.append(e)
        for chunk in chunks(fit, KINESIS_MAX_RECORDS, KINESIS_MAX_BYTES):
            _send_with_retries(chunk, self._send, self._policy, outcome)
        return outcome


class SqsSink:
    """SendMessageBatch in groups of at most 10 messages and 256 KiB."""

    def __init__(self, client: Any, queue_url: str, policy: RetryPolicy | None = None) -> None:
        self._client = client
        self._url = queue_url
        self._policy = policy or RetryPolicy()

    def _send(self, entries: list[Entry], outcome: PutOutcome) -> list[bool]:
        """True for entries done: sent, or refused for their content (recorded in `outcome.rejected`)."""
        from botocore.exceptions import ClientError

        try:
            resp = self._client.send_message_batch(
                QueueUrl=self._url,
                Entries=[
                    {
                        "Id": str(i),
                        "MessageBody": e.data.decode(),
                        "MessageAttributes": {"reason": {"DataType": "String", "StringValue": e.key}},
                    }
                    for i, e in enumerate(entries)
                ],
            )
        except ClientError as exc:
            code = (_call_error_code(exc) or "").rsplit(".", 1)[-1]
            if code not in _SQS_CONTENT_ERRORS:
                raise
            if len(entries) > 1:  # find the message at fault: each on its own
                return [self._send([e], outcome)[0] for e in entries]
            outcome.rejected[entries[0].ref] = f"{code}: {exc}"[:500]
            return [True]
        ok = [True] * len(entries)
        for f in resp.get("Failed", []):
            i = int(f["Id"])
            if f.get("SenderFault"):
                outcome.rejected[entries[i].ref] = f"{f.get('Code', '')}: {f.get('Message', '')}"[:500]
            else:
                ok[i] = False
        return ok

    def put(self, entries: Sequence[Entry]) -> PutOutcome:
        outcome = PutOutcome()
        for chunk in chunks(entries, SQS_MAX_ENTRIES, SQS_MAX_BYTES, overhead=64):
            _send_with_retries(chunk, lambda part: self._send(part, outcome), self._policy, outcome)
        return outcome


class MemorySink:
    """Keeps entries in a list: for benchmarks, tests and local dry runs."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []

    def put(self, entries: Sequence[Entry]) -> PutOutcome:
        self.entries.extend(entries)
        return PutOutcome()

    def json(self) -> list[Any]:
        return [json.loads(e.data) for e in self.entries]
