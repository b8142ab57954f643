"""Lambda's Kinesis event source mapping, played locally: poll shards, batch, invoke, checkpoint, retry.

What it reproduces (the settings come from `infra.topology.TriggerSpec`, the same the CDK stack uses):
- one reader per shard, records delivered in order, at most one batch in flight per shard;
- batch size, batching window and the 6 MB invocation payload limit; starting position;
- ReportBatchItemFailures: the checkpoint moves only past what succeeded and the batch is retried from
  the lowest failed sequence number; an unknown or empty itemIdentifier fails the whole batch;
- function errors: with bisect on, the batch is split in two and each half retried on its own;
- retry attempts and maximum record age: records that exhaust them are skipped and described in a
  message to the on-failure destination (SQS), in Lambda's own format (`KinesisBatchInfo`).
Invocations are serialized by default (`max_concurrency=1`): the handler's Powertools state is
process-global, as in one execution environment; reading and batching run concurrently per shard.
Parallelization factor > 1 and resharding are not emulated (one consumer per shard that exists at start).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from infra.topology import TriggerSpec
from servingkit.lambda_context import LambdaContext
from servingkit.localcloud.aws_responses import THROTTLED, epoch, error_code

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # Lambda's synchronous invocation payload limit
_RECORD_OVERHEAD = 600  # JSON around one record in the event (ids, ARNs, names)
_GET_RECORDS_LIMIT = 10_000


class FunctionError(Exception):
    """The handler raised, or answered with batchItemFailures Lambda cannot honour."""


@dataclass(frozen=True, slots=True)
class StreamRecord:
    sequence_number: str
    partition_key: str
    data: bytes
    arrival: float  # approximateArrivalTimestamp, epoch seconds


@dataclass
class PollerStats:
    """Counters over all shards (read under the poller's lock)."""

    invocations: int = 0
    function_errors: int = 0
    partial_failures: int = 0
    bisections: int = 0
    retries: int = 0
    records_read: int = 0
    records_checkpointed: int = 0
    records_to_on_failure: int = 0
    on_failure_messages: int = 0
    handler_seconds: float = 0.0
    checkpoints: dict[str, str] = field(default_factory=dict)


def kinesis_event(records: Iterable[StreamRecord], shard_id: str, stream_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda sends for a Kinesis batch."""
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number,
                    "data": base64.b64encode(r.data).decode(),
                    "approximateArrivalTimestamp": r.arrival,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard_id}:{r.sequence_number}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": f"arn:aws:iam::{_account(stream_arn)}:role/local-scorer",
                "awsRegion": region,
                "eventSourceARN": stream_arn,
            }
            for r in records
        ]
    }


def _account(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 and parts[4] else "000000000000"


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def first_failure(response: Any, batch: list[StreamRecord]) -> int | None:
    """Index in `batch` to resume from (None: the whole batch succeeded), as Lambda reads the response."""
    if not isinstance(response, Mapping):
        return None
    failures = response.get("batchItemFailures")
    if not failures:
        return None
    index = {r.sequence_number: i for i, r in enumerate(batch)}
    lowest = len(batch)
    for item in failures:
        ident = item.get("itemIdentifier") if isinstance(item, Mapping) else None
        if not ident or str(ident) not in index:
            raise FunctionError(f"batchItemFailures names {ident!r}, which is not a sequence number of this batch")
        lowest = min(lowest, index[str(ident)])
    return lowest


class KinesisPoller:
    """Consumes every shard of one stream with `handler`; `start()` runs threads, `stop()` joins them."""

    def __init__(
        self,
        *,
        kinesis: Any,
        stream_arn: str,
        handler: Handler,
        trigger: TriggerSpec | None = None,
        sqs: Any | None = None,
        on_failure_url: str | None = None,
        function_name: str = "local-scorer",
        region: str = "us-east-1",
        idle_poll_s: float = 0.2,
        retry_base_s: float = 0.05,
        retry_max_s: float = 1.0,
        max_concurrency: int = 1,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kinesis = kinesis
        self.stream_arn = stream_arn
        self.stream_name = stream_arn.rsplit("/", 1)[-1]
        self.handler = handler
        self.trigger = trigger or TriggerSpec()
        self.sqs = sqs
        self.on_failure_url = on_failure_url
        self.function_arn = f"arn:aws:lambda:{region}:{_account(stream_arn)}:function:{function_name}"
        self.function_name = function_name
        self.region = region
        self.idle_poll_s = idle_poll_s
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.sleep = sleep
        self.clock = clock
        self.stats = PollerStats()
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self._invoke_slots = threading.BoundedSemaphore(max_concurrency)
        self._threads: list[threading.Thread] = []
        self.shards: dict[str, ShardConsumer] = {}
        self.errors: list[str] = []

    # -- lifecycle ------------------------------------------------------------------------------
    def discover(self) -> list[ShardConsumer]:
        """One consumer per shard that exists now (a closed shard is read to its end, then its thread ends)."""
        shards: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"NextToken": token} if token else {"StreamARN": self.stream_arn}
            page = self.kinesis.list_shards(**kwargs)
            shards.extend(page["Shards"])
            token = page.get("NextToken")
            if not token:
                break
        for shard in shards:
            sid = shard["ShardId"]
            if sid not in self.shards:
                self.shards[sid] = ShardConsumer(self, sid)
        return list(self.shards.values())

    def start(self) -> KinesisPoller:
        self.stop_event.clear()
        consumers = self.discover()
        for consumer in consumers:  # positions are taken now, so LATEST means "after start()" as in Lambda
            if consumer.iterator is None:
                consumer.iterator = consumer._new_iterator()
        for consumer in consumers:
            thread = threading.Thread(target=consumer.run, name=f"poller-{consumer.shard_id}", daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in flight on each shard, then return; unfinished batches stay uncheckpointed."""
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        self._threads = [t for t in self._threads if t.is_alive()]
        if alive:
            raise TimeoutError(f"poller threads still running after {timeout:.0f} s: {', '.join(alive)}")

    def __enter__(self) -> KinesisPoller:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- invocation -----------------------------------------------------------------------------
    def invoke(self, shard_id: str, batch: list[StreamRecord]) -> int | None:
        """Run the handler on one batch; the index to resume from, or None when all succeeded."""
        event = kinesis_event(batch, shard_id, self.stream_arn, self.region)
        context = LambdaContext(self.function_name, self.function_arn)  # a fresh request id per invocation
        with self.lock:
            self.stats.invocations += 1
        with self._invoke_slots:
            began = time.perf_counter()
            try:
                response = self.handler(event, context)
            except Exception as exc:
                raise FunctionError(f"{type(exc).__name__}: {exc}") from exc
            finally:
                with self.lock:
                    self.stats.handler_seconds += time.perf_counter() - began
        return first_failure(response, batch)

    def backoff(self, attempt: int) -> None:
        self.sleep(min(self.retry_max_s, self.retry_base_s * (2 ** max(0, attempt - 1))))

    def send_on_failure(self, shard_id: str, batch: list[StreamRecord], condition: str, attempts: int) -> None:
        """Describe skipped records to the on-failure destination, as Lambda does (metadata, not data)."""
        message = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": self.function_arn,
                "condition": condition,
                "approximateInvokeCount": attempts,
            },
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "version": "1.0",
            "timestamp": _iso(self.clock()),
            "KinesisBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": batch[0].sequence_number,
                "endSequenceNumber": batch[-1].sequence_number,
                "approximateArrivalOfFirstRecord": _iso(batch[0].arrival),
                "approximateArrivalOfLastRecord": _iso(batch[-1].arrival),
                "batchSize": len(batch),
                "streamArn": self.stream_arn,
            },
        }
        log.warning("records skipped to the on-failure destination: %s", message["KinesisBatchInfo"])
        if self.sqs is not None and self.on_failure_url:
            attempt = 0
            while True:
                try:
                    self.sqs.send_message(QueueUrl=self.on_failure_url, MessageBody=json.dumps(message))
                    break
                except Exception as exc:
                    attempt += 1
                    if self.stop_event.is_set():
                        raise
                    log.warning("on-failure destination unavailable (%s); retrying", exc)
                    self.backoff(attempt)
        with self.lock:
            self.stats.records_to_on_failure += len(batch)
            self.stats.on_failure_messages += 1


class ShardConsumer:
    """Reads one shard in order and delivers each batch until it is checkpointed or sent on-failure."""

    def __init__(self, poller: KinesisPoller, shard_id: str) -> None:
        self.p = poller
        self.shard_id = shard_id
        self.buffer: deque[StreamRecord] = deque()
        self.iterator: str | None = None
        self.last_read: str | None = None  # last sequence number taken from the stream into the buffer
        self.checkpoint: str | None = None
        self.closed = False  # GetRecords returned no next iterator: the shard was closed by resharding

    # -- reading --------------------------------------------------------------------------------
    def _new_iterator(self) -> str:
        kinesis = self.p.kinesis
        if self.last_read is not None:
            kwargs: dict[str, Any] = {
                "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                "StartingSequenceNumber": self.last_read,
            }
        else:
            kwargs = {"ShardIteratorType": self.p.trigger.starting_position}
        resp = kinesis.get_shard_iterator(StreamName=self.p.stream_name, ShardId=self.shard_id, **kwargs)
        return str(resp["ShardIterator"])

    def fetch(self) -> int:
        """One GetRecords call into the buffer; returns how many records arrived."""
        if self.closed:
            return 0
        if self.iterator is None:
            self.iterator = self._new_iterator()
        try:
            resp = self.p.kinesis.get_records(ShardIterator=self.iterator, Limit=_GET_RECORDS_LIMIT)
        except Exception as exc:
            code = error_code(exc)
            if code == "ExpiredIteratorException":
                self.iterator = None
                return 0
            if code in THROTTLED:
                self.p.sleep(self.p.idle_poll_s)
                return 0
            raise
        self.iterator = resp.get("NextShardIterator")
        self.closed = self.iterator is None
        records = resp.get("Records", [])
        for r in records:
            data = r["Data"]
            self.buffer.append(
                StreamRecord(
                    sequence_number=str(r["SequenceNumber"]),
                    partition_key=str(r["PartitionKey"]),
                    data=data if isinstance(data, bytes) else base64.b64decode(data),
                    arrival=epoch(r["ApproximateArrivalTimestamp"]),
                )
            )
        if records:
            self.last_read = self.buffer[-1].sequence_number
            with self.p.lock:
                self.p.stats.records_read += len(records)
        return len(records)

    def gather(self) -> list[StreamRecord]:
        """A full batch, or what arrived before the batching window (from the first buffered record) closed."""
        trigger = self.p.trigger
        deadline: float | None = None
        while not self.p.stop_event.is_set():
            if len(self.buffer) >= trigger.batch_size:
                break
            now = time.monotonic()
            if self.buffer:
                if deadline is None:
                    deadline = now + trigger.batching_window_seconds
                if now >= deadline:
                    break
            if self.fetch() == 0:
                if not self.buffer and self.closed:
                    break
                if not self.buffer:  # nothing on the shard: one idle poll interval, then report an empty batch
                    self.p.stop_event.wait(self.p.idle_poll_s)
                    break
                if deadline is not None and self.p.stop_event.wait(max(0.0, min(self.p.idle_poll_s, deadline - now))):
                    break
        return self._take()

    def _take(self) -> list[StreamRecord]:
        batch: list[StreamRecord] = []
        size = 0
        for record in self.buffer:
            cost = len(record.data) * 4 // 3 + len(record.partition_key) + _RECORD_OVERHEAD
            if len(batch) >= self.p.trigger.batch_size or (batch and size + cost > MAX_PAYLOAD_BYTES):
                break
            batch.append(record)
            size += cost
        return batch

    # -- delivering -----------------------------------------------------------------------------
    def _advance(self, records: list[StreamRecord]) -> None:
        """Checkpoint past `records` (a prefix of the buffer)."""
        for _ in records:
            self.buffer.popleft()
        if records:
            self.checkpoint = records[-1].sequence_number
            with self.p.lock:
                self.p.stats.checkpoints[self.shard_id] = self.checkpoint

    def _expired(self, batch: list[StreamRecord]) -> int:
        """How many leading records are older than the maximum record age."""
        limit = self.p.trigger.max_record_age_seconds
        if limit < 0:
            return 0
        now = self.p.clock()
        n = 0
        while n < len(batch) and now - batch[n].arrival > limit:
            n += 1
        return n

    def _exhausted(self, attempts: int) -> bool:
        retries = self.p.trigger.retry_attempts
        return retries >= 0 and attempts > retries

    def _retry_or_skip(self, batch: list[StreamRecord], attempts: int) -> bool:
        """After a failed attempt: True if retries are exhausted and `batch` was sent on-failure and skipped,
        False if a retry was counted and the backoff slept (the caller invokes again)."""
        p = self.p
        if self._exhausted(attempts):
            p.send_on_failure(self.shard_id, batch, "RetryAttemptsExhausted", attempts)
            self._skip(batch)
            return True
        with p.lock:
            p.stats.retries += 1
        p.backoff(attempts)
        return False

    def deliver(self, batch: list[StreamRecord]) -> bool:
        """Invoke until every record of `batch` is checkpointed or skipped; False if stopped midway."""
        p = self.p
        attempts = 0
        while batch:
            expired = self._expired(batch)
            if expired:
                p.send_on_failure(self.shard_id, batch[:expired], "RecordAgeExceeded", attempts)
                self._skip(batch[:expired])
                batch = batch[expired:]
                continue
            if attempts and p.stop_event.is_set():
                return False
            try:
                resume = p.invoke(self.shard_id, batch)
            except FunctionError as exc:
                attempts += 1
                with p.lock:
                    p.stats.function_errors += 1
                log.warning(
                    "function error on %s (%d records, attempt %d): %s", self.shard_id, len(batch), attempts, exc
                )
                if p.trigger.bisect_on_error and len(batch) > 1:
                    with p.lock:
                        p.stats.bisections += 1
                    mid = len(batch) // 2
                    return self.deliver(batch[:mid]) and self.deliver(batch[mid:])
                if self._retry_or_skip(batch, attempts):
                    return True
                continue
            if resume is None:
                self._done(batch)
                return True
            attempts += 1
            with p.lock:
                p.stats.partial_failures += 1
            self._done(batch[:resume])
            batch = batch[resume:]
            if self._retry_or_skip(batch, attempts):
                return True
        return True

    def _done(self, records: list[StreamRecord]) -> None:
        self._advance(records)
        with self.p.lock:
            self.p.stats.records_checkpointed += len(records)

    def _skip(self, records: list[StreamRecord]) -> None:
        self._advance(records)

    def step(self) -> int:
        """Gather one batch and deliver it; returns the batch size (0 when nothing arrived)."""
        batch = self.gather()
        if batch:
            self.deliver(batch)
        return len(batch)

    def run(self) -> None:
        while not self.p.stop_event.is_set() and not (self.closed and not self.buffer):
            try:
                self.step()
            except Exception as exc:  # noqa: BLE001 - keep the shard alive; the error is recorded and logged
                message = f"{self.shard_id}: {type(exc).__name__}: {exc}"
                log.error("poller error on %s", message)
                with self.p.lock:
                    self.p.errors.append(message)
                self.iterator = None  # re-read from the last record taken; the buffer is kept
                self.p.stop_event.wait(self.p.retry_max_s)
