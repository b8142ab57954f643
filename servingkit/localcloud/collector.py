"""Reading a run back: the output stream, the dead-letter queue and the on-failure queue, concurrently with
the pipeline, until every record of the ledger is accounted for (or a bounded wait ends); and the input
stream's arrival times, for end-to-end latency. What was read is handed to `accounting`.

Messages read stay hidden (not deleted) until the run ends, then are made visible again: the queues are
left as found.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from servingkit.localcloud.accounting import PipelineSummary, account, position, skipped_positions
from servingkit.localcloud.aws_responses import THROTTLED, epoch, error_code
from servingkit.localcloud.faults import DOWN_GRACE_S, EmulatorFaultError
from servingkit.localcloud.poller import KinesisPoller
from servingkit.localcloud.resources import Resources
from servingkit.localcloud.traffic import Position, Progress

_IDLE_S = 0.1  # collector pause when nothing new arrived (GetRecords: 5 calls/s per shard in AWS)
_HIDE_S = 900  # messages read by the collector stay hidden (not deleted) until the run ends


class Collector:
    """Reads the output stream, the DLQ and the on-failure queue concurrently with the pipeline."""

    def __init__(self, clients: Mapping[str, Any], resources: Resources) -> None:
        self.kinesis, self.sqs = clients["kinesis"], clients["sqs"]
        self.res = resources
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.outputs: list[tuple[float, dict[str, Any]]] = []
        self.dead: list[dict[str, Any]] = []
        self.batch_failures: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._ledger: dict[Position, Any] | None = None
        self._seen_messages: set[str] = set()
        self._handles: list[tuple[str, str]] = []
        self._positions: set[Position] = set()
        self._last_seq: dict[str, str] = {}
        self._thread = threading.Thread(target=self._loop, name="collector", daemon=True)
        self.last_read = time.time()

    def start(self) -> None:
        stream = self.res.topology.output_stream.name
        self._iterators = {
            s["ShardId"]: self.kinesis.get_shard_iterator(
                StreamName=stream, ShardId=s["ShardId"], ShardIteratorType="LATEST"
            )["ShardIterator"]
            for s in self.kinesis.list_shards(StreamName=stream)["Shards"]
        }
        self._thread.start()

    def stop(self) -> None:
        """Stop reading and make the messages read visible again: the queues are left as found."""
        self.stop_event.set()
        if self._thread.is_alive():
            self._thread.join(30)
        by_queue: dict[str, list[str]] = {}
        for url, handle in self._handles:
            by_queue.setdefault(url, []).append(handle)
        for url, handles in by_queue.items():
            for start in range(0, len(handles), 10):
                entries = [
                    {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
                    for i, h in enumerate(handles[start : start + 10])
                ]
                try:
                    self.sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
                except Exception as exc:  # noqa: BLE001 - they become visible anyway after _HIDE_S
                    self.errors.append(f"could not unhide messages: {exc}")
                    break

    def expect(self, ledger: dict[Position, Any]) -> None:
        with self.lock:
            self._ledger = ledger
            self._positions |= skipped_positions(ledger, self.batch_failures)

    def _read_stream(self) -> int:
        n = 0
        stream = self.res.topology.output_stream.name
        for sid, it in list(self._iterators.items()):
            if not it:
                continue
            try:
                resp = self.kinesis.get_records(ShardIterator=it, Limit=10_000)
            except Exception as exc:
                code = error_code(exc)
                if code in THROTTLED:
                    continue  # GetRecords is limited to 5 calls/s per shard: try again next round
                if code != "ExpiredIteratorException":
                    raise
                last = self._last_seq.get(sid)
                kwargs: dict[str, Any] = (
                    {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": last}
                    if last
                    else {"ShardIteratorType": "TRIM_HORIZON"}
                )
                self._iterators[sid] = self.kinesis.get_shard_iterator(StreamName=stream, ShardId=sid, **kwargs)[
                    "ShardIterator"
                ]
                continue
            now = time.time()
            self._iterators[sid] = resp.get("NextShardIterator")
            records = resp["Records"]
            if not records:
                continue
            self._last_seq[sid] = str(records[-1]["SequenceNumber"])
            rows = [(now, json.loads(r["Data"])) for r in records]
            with self.lock:
                self.outputs.extend(rows)
                self._positions.update(position(body) for _, body in rows)
            n += len(rows)
        return n

    def _read_queue(self, url: str, into: list[dict[str, Any]]) -> int:
        n = 0
        while True:
            resp = self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=_HIDE_S
            )
            messages = resp.get("Messages", [])
            if not messages:
                return n
            fresh = [m for m in messages if m["MessageId"] not in self._seen_messages]
            self._seen_messages.update(m["MessageId"] for m in messages)
            bodies = [json.loads(m["Body"]) for m in fresh]
            with self.lock:
                into.extend(bodies)
                if into is self.dead:
                    self._positions.update(position(b) for b in bodies)
                elif self._ledger is not None:
                    self._positions |= skipped_positions(self._ledger, bodies)
                self._handles.extend((url, m["ReceiptHandle"]) for m in messages)
            n += len(fresh)

    def _loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                got = self._read_stream()
                got += self._read_queue(self.res.dlq_url, self.dead)
                got += self._read_queue(self.res.on_failure_url, self.batch_failures)
            except Exception as exc:  # noqa: BLE001 - recorded; the bounded wait reports what is missing
                self.errors.append(f"{type(exc).__name__}: {exc}")
                got = 0
            if got:
                self.last_read = time.time()
            else:
                self.stop_event.wait(_IDLE_S)

    def accounted(self) -> int:
        """Records of the ledger seen as a prediction, a dead letter or inside an on-failure range."""
        ledger = self._ledger or {}
        with self.lock:
            return len(self._positions & ledger.keys())

    def wait(
        self,
        timeout_s: float,
        progress: Progress | None = None,
        health: Callable[[], EmulatorFaultError | None] | None = None,
        down_grace_s: float = DOWN_GRACE_S,
    ) -> str | None:
        """Wait until every record of the ledger is accounted for: None then, else why not, in one line.

        `health` is asked about once a second: an emulator that lost its state ends the wait at once, one
        that stays silent for `down_grace_s` ends it then (a shorter pause is waited out).
        """
        total = len(self._ledger or {})
        deadline = time.monotonic() + timeout_s
        next_check, silent_since = time.monotonic() + 1.0, None
        while time.monotonic() < deadline:
            done = self.accounted()
            if progress:
                progress("collect", done, total)
            if done >= total:
                # A short grace period catches duplicates still in flight.
                self.stop_event.wait(0.3)
                return None
            if health is not None and time.monotonic() >= next_check:
                fault = health()
                next_check = time.monotonic() + 1.0
                if fault is None:
                    silent_since = None
                elif fault.lost_state:
                    return f"{fault.reason}, while reading back"
                else:
                    silent_since = silent_since or time.monotonic()
                    if time.monotonic() - silent_since >= down_grace_s:
                        return f"{fault.reason} for {down_grace_s:.0f} s, while reading back"
            time.sleep(0.1)
        return f"timed out after {timeout_s:.0f} s with {total - self.accounted():,} records unaccounted for"

    def summary(
        self,
        *,
        endpoint: str,
        started: float,
        produce_seconds: float,
        poller: KinesisPoller,
        arrivals: Mapping[tuple[str, str], float],
        n_samples: int,
    ) -> PipelineSummary:
        """Account for the ledger given to `expect()` against everything read."""
        with self.lock:
            outputs, dead, failures = list(self.outputs), list(self.dead), list(self.batch_failures)
        return account(
            self._ledger or {},
            outputs=outputs,
            dead=dead,
            failures=failures,
            topology=self.res.topology,
            endpoint=endpoint,
            started=started,
            last_read=self.last_read,
            produce_seconds=produce_seconds,
            poller=poller,
            arrivals=arrivals,
            n_samples=n_samples,
            errors=self.errors,
        )


def read_arrivals(kinesis: Any, stream: str) -> dict[tuple[str, str], float]:
    """Approximate arrival time of every record of a stream, by (shard, sequence number)."""
    out: dict[tuple[str, str], float] = {}
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        sid = shard["ShardId"]
        it = kinesis.get_shard_iterator(StreamName=stream, ShardId=sid, ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        empty = 0
        while it and empty < 20:
            try:
                resp = kinesis.get_records(ShardIterator=it, Limit=10_000)
            except Exception as exc:
                if error_code(exc) not in THROTTLED:
                    raise
                time.sleep(0.2)
                continue
            for r in resp["Records"]:
                out[(sid, str(r["SequenceNumber"]))] = epoch(r["ApproximateArrivalTimestamp"])
            if not resp["Records"]:
                if resp.get("MillisBehindLatest", 0) == 0:
                    break
                empty += 1
            it = resp.get("NextShardIterator")
    return out
