"""Producer → input stream → scorer (the real handler, invoked by the local poller) → output stream / DLQ.

`run_pipeline()` works against any endpoint that speaks the AWS APIs: the embedded moto server by
default, or an existing one (LocalStack) given by URL. It produces realistic rides with ~1% poison of
several kinds, reads the output stream and the queues back until every record is accounted for (or a
bounded wait ends) and returns what happened: predicted, dead-lettered, skipped, lost, duplicates,
throughput and end-to-end latency (reader's clock minus the input record's approximate arrival).

If the emulator stops answering or comes back empty mid-run, the run stops there and still returns its
summary: what was acknowledged, accounted for and lost, with the reason in `stopped` (one line).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from infra.topology import Ctx, Topology, topology
from lambda_fn.config import ENV_FIELDS, Env
from servingkit.localcloud.emulator import (
    DEFAULT_REGION,
    endpoint_environment,
    patched_environ,
    pointed_at,
    start_emulator,
)
from servingkit.localcloud.faults import EmulatorFaultError, client_config, emulator_fault
from servingkit.localcloud.poller import _THROTTLED, KinesisPoller, _epoch, _error_code
from servingkit.localcloud.resources import DEFAULT_MODEL_DIR, DEFAULT_RELEASE, Release, Resources, provision

Progress = Callable[[str, int, int], None]
Position = tuple[str, str, int | None]  # shard id, sequence number, sub-sequence number (KPL) or None
POISON_KINDS = (
    "not_json",
    "not_utf8",
    "not_object",
    "missing_features",
    "bad_location_id",
    "bad_distance_type",
    "missing_pickup_time",
    "kpl_corrupt",
)
KPL_GROUP = 20
_PUT_MAX = 500
_IDLE_S = 0.1  # collector pause when nothing new arrived (GetRecords: 5 calls/s per shard in AWS)
_HIDE_S = 900  # messages read by the collector stay hidden (not deleted) until the run ends
DOWN_GRACE_S = 10.0  # an emulator silent this long is taken for dead (a shorter pause is ridden out)


@dataclass(frozen=True, slots=True)
class Unit:
    """One Kinesis record to put: plain, or a KPL aggregate of several user records."""

    data: bytes
    key: str
    items: tuple[tuple[str, str | None], ...]  # (label, poison kind or None) per user record, in order
    aggregated: bool = False


@dataclass
class PipelineSummary:
    """What one run produced and what came back; `lost` must be 0."""

    endpoint: str
    input_shards: int
    output_shards: int
    records_in: int = 0
    poison_in: int = 0
    kpl_user_records: int = 0
    predicted: int = 0
    dead_lettered: int = 0
    skipped_on_failure: int = 0
    lost: int = 0
    duplicates: int = 0
    misrouted: int = 0  # a good record dead-lettered or a poison record predicted
    foreign: int = 0  # results of records this run did not produce (an earlier run on the same resources)
    id_mismatches: int = 0
    produce_seconds: float = 0.0
    seconds: float = 0.0
    throughput_rps: float = 0.0
    latency_ms_p50: float | None = None
    latency_ms_p99: float | None = None
    latency_ms_max: float | None = None
    dlq_reasons: dict[str, int] = field(default_factory=dict)
    poller: dict[str, Any] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    model_load_seconds: float | None = None
    complete: bool = False
    unsent: int = 0  # user records the producer never had acknowledged (not counted in records_in)
    stopped: str | None = None  # why the run ended before every record was accounted for, in one line

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- records -------------------------------------------------------------------------------------
def _poison(kind: str, label: str, ride: dict[str, Any]) -> bytes:
    if kind == "not_json":
        return json.dumps({"ride_id": label, "ride": ride}).encode()[:-7]
    if kind == "not_utf8":
        return b"\xff\xfe\xfa" + label.encode()
    if kind == "not_object":
        return json.dumps([label, ride]).encode()
    if kind == "missing_features":
        return json.dumps({"ride_id": label, "trip": ride}).encode()
    if kind == "bad_location_id":
        return json.dumps({"ride_id": label, "ride": {**ride, "PULocationID": "midtown"}}).encode()
    if kind == "bad_distance_type":
        return json.dumps({"ride_id": label, "ride": {**ride, "trip_distance": "far"}}).encode()
    if kind == "missing_pickup_time":
        return json.dumps(
            {"ride_id": label, "ride": {k: v for k, v in ride.items() if k != "pickup_datetime"}}
        ).encode()
    if kind == "kpl_corrupt":
        from lambda_fn.records import KPL_MAGIC

        return KPL_MAGIC + b"\x0a\x03bad" + label.encode() + bytes(16)
    raise ValueError(f"unknown poison kind {kind!r}")


def _aggregate(events: Sequence[dict[str, Any]]) -> tuple[bytes, str]:
    import aws_kinesis_agg.aggregator as agg

    aggregator = agg.RecordAggregator()
    for event in events:
        aggregator.add_user_record(str(event["ride_id"]), json.dumps(event).encode())
    key, _, data = aggregator.clear_and_get().get_contents()
    return bytes(data), str(key)


def make_units(n: int, *, poison_rate: float = 0.01, kpl_share: float = 0.05, seed: int = 42) -> list[Unit]:
    """n user records: good rides, poison spread at random, some good rides inside KPL aggregates."""
    from servingkit.taxi import ride_events

    rng = random.Random(seed)
    events = list(ride_events(n, seed))
    n_poison = round(n * poison_rate)
    poison_at = set(rng.sample(range(n), n_poison)) if n_poison else set()
    good = [e for i, e in enumerate(events) if i not in poison_at]
    n_kpl = int(len(good) * kpl_share) // KPL_GROUP * KPL_GROUP
    kpl_ids = {e["ride_id"] for e in rng.sample(good, n_kpl)} if n_kpl else set()
    units: list[Unit] = []
    pending: list[dict[str, Any]] = []
    n_bad = 0
    for i, event in enumerate(events):
        label = str(event["ride_id"])
        if i in poison_at:
            kind = POISON_KINDS[n_bad % len(POISON_KINDS)]
            n_bad += 1
            units.append(Unit(_poison(kind, label, event["ride"]), label, ((label, kind),)))
        elif label in kpl_ids:
            pending.append(event)
            if len(pending) == KPL_GROUP:
                data, key = _aggregate(pending)
                units.append(Unit(data, key, tuple((str(e["ride_id"]), None) for e in pending), aggregated=True))
                pending = []
        else:
            units.append(Unit(json.dumps(event, separators=(",", ":")).encode(), label, ((label, None),)))
    return units


# -- local cloud ---------------------------------------------------------------------------------
class LocalCloud:
    """Emulator (or a given endpoint), the stack's resources, the model and the running poller."""

    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        ctx: Mapping[str, Any] | None = None,
        shards: int | None = None,
        model_dir: str | Path = DEFAULT_MODEL_DIR,
        release: str | Path = DEFAULT_RELEASE,
        region: str = DEFAULT_REGION,
        handler: Callable[[dict[str, Any], Any], Any] | None = None,
        max_concurrency: int = 1,
        warm: bool = True,
        environment: Mapping[str, str] | None = None,
        function: Callable[[dict[str, str]], Callable[[dict[str, Any], Any], Any]] | None = None,
    ) -> None:
        """`function`, given the scorer's environment, makes the handler the poller invokes (the image runner);
        by default the handler runs in this process."""
        context = dict(ctx or {})
        context.setdefault(Ctx.STAGE, "local")
        context.setdefault(Ctx.PREFIX, f"serving-local-{secrets.token_hex(3)}")
        if shards is not None:
            context[Ctx.INPUT_SHARDS] = shards
        self.topology: Topology = topology(context)
        self.endpoint_url = endpoint_url
        self.region = region
        self.release = Release.load(model_dir, release)
        self.handler = handler
        self.max_concurrency = max_concurrency
        self.warm = warm
        self.extra_env = dict(environment or {})
        self.function = function
        self.last_ledger: dict[Position, tuple[str, str | None]] = {}
        self.last_collector: Collector | None = None
        self.model_load_seconds: float | None = None
        self.resources: Resources | None = None
        self.poller: KinesisPoller | None = None
        self.clients: dict[str, Any] = {}
        self.notes: list[str] = []  # what went wrong while shutting down after another error
        self.last_stopped: str | None = None  # why the last run ended early (None: it completed)
        self._stack = ExitStack()

    def __enter__(self) -> LocalCloud:
        try:
            self._start()
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            fault = emulator_fault(exc, self.endpoint_url) if isinstance(exc, Exception) else None
            if fault is not None:
                raise fault from exc
            raise
        return self

    def _start(self) -> None:
        import boto3

        if self.endpoint_url is None:
            emulator = start_emulator()
            self._stack.callback(emulator.stop)
            self.endpoint_url = emulator.endpoint_url
        self._stack.enter_context(pointed_at(self.endpoint_url, self.region))
        self.clients = {name: boto3.client(name, config=client_config()) for name in ("kinesis", "sqs", "s3")}
        self.resources = provision(self.topology, self.release, self.clients, self.region)
        if self.function is not None:
            # Its own process: the scorer's settings and the emulator's endpoint, nothing of this process.
            image = self.function(
                {**self.resources.environment, **endpoint_environment(self.endpoint_url, self.region), **self.extra_env}
            )
            self._stack.callback(getattr(image, "stop", lambda: None))
            self._start_poller(image)
            return
        cache = tempfile.mkdtemp(prefix="servingkit-model-")
        self._stack.callback(shutil.rmtree, cache, True)
        scorer_env = {
            **self.resources.environment,
            Env.MODEL_CACHE_DIR: cache,
            "POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED", "true"),
            "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
            **self.extra_env,
        }
        others = tuple(name for name in ENV_FIELDS if name not in scorer_env)
        self._stack.enter_context(patched_environ(scorer_env, unset=others))
        from lambda_fn import runtime

        runtime.reset()
        self._stack.callback(runtime.reset)
        if self.warm:
            # Like provisioned concurrency: load the model before traffic, so latency shows steady state.
            self.model_load_seconds = round(runtime.get_model().load_seconds, 3)
        if self.handler is None:
            from lambda_fn.handler import stream_handler

            self._start_poller(stream_handler)
        else:
            self._start_poller(self.handler)

    def _start_poller(self, handler: Callable[[dict[str, Any], Any], Any]) -> None:
        assert self.resources is not None
        self.poller = KinesisPoller(
            kinesis=self.clients["kinesis"],
            stream_arn=self.resources.input_stream_arn,
            handler=handler,
            trigger=self.topology.trigger,
            sqs=self.clients["sqs"],
            on_failure_url=self.resources.on_failure_url,
            region=self.region,
            max_concurrency=self.max_concurrency,
        )
        self.poller.start()
        self._stack.callback(self.poller.stop)

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        """Shut everything down; a failure doing so never replaces the error that ended the run (a poller
        thread still blocked on a dead emulator is noted, and the original exception propagates)."""
        try:
            self._stack.close()
        except Exception as cleanup:
            if exc is None and self.last_stopped is None:
                raise
            self.notes.append(f"while shutting down: {type(cleanup).__name__}: {cleanup}")

    def health(self) -> EmulatorFaultError | None:
        """Does the emulator still answer, with the stack's input stream? None when it does."""
        assert self.resources is not None
        try:
            self.clients["kinesis"].describe_stream_summary(StreamName=self.resources.topology.input_stream.name)
        except Exception as exc:
            fault = emulator_fault(exc, self.endpoint_url)
            if fault is None:
                raise
            return fault
        return None

    def run(
        self,
        records: int = 10_000,
        *,
        poison_rate: float = 0.01,
        kpl_share: float = 0.05,
        seed: int = 42,
        timeout_s: float | None = None,
        progress: Progress | None = None,
        samples: int = 5,
        rate: float | None = None,
    ) -> PipelineSummary:
        """Produce `records` user records and account for every one of them.

        An emulator fault (it stops answering, or restarted empty) ends the run early, never with an
        exception: the summary says what was acknowledged and accounted for, and why it stopped.
        """
        assert self.resources is not None and self.poller is not None, "use LocalCloud as a context manager"
        units = make_units(records, poison_rate=poison_rate, kpl_share=kpl_share, seed=seed)
        collector = Collector(self.clients, self.resources)
        ledger: dict[Position, tuple[str, str | None]] = {}
        stopped: str | None = None
        started = produced = time.time()
        try:
            collector.start()
            try:
                produce(
                    self.clients["kinesis"], self.resources.topology.input_stream.name, units, progress, rate, ledger
                )
            finally:
                produced = time.time()
                collector.expect(ledger)
            limit = timeout_s if timeout_s is not None else 60.0 + records / 200
            stopped = collector.wait(limit, progress, health=self.health)
        except KeyboardInterrupt:
            stopped = "interrupted"
        except Exception as exc:
            fault = emulator_fault(exc, self.endpoint_url)
            if fault is None:
                raise
            phase = "producing" if len(ledger) < sum(len(u.items) for u in units) else "reading back"
            stopped = f"{fault.reason}, while {phase}"
        finally:
            collector.stop()
        self.last_ledger, self.last_collector, self.last_stopped = ledger, collector, stopped
        try:
            arrivals = read_arrivals(self.clients["kinesis"], self.resources.topology.input_stream.name)
        except Exception as exc:
            if emulator_fault(exc, self.endpoint_url) is None:
                raise
            arrivals = {}  # latencies unknown: the emulator holding the input is gone
        summary = collector.summary(
            endpoint=self.endpoint_url or "",
            started=started,
            produce_seconds=produced - started,
            poller=self.poller,
            arrivals=arrivals,
            n_samples=samples,
        )
        summary.model_load_seconds = self.model_load_seconds
        summary.unsent = sum(len(u.items) for u in units) - len(ledger)
        summary.stopped = stopped
        summary.complete = summary.complete and stopped is None
        return summary


# -- producer ------------------------------------------------------------------------------------
def produce(
    kinesis: Any,
    stream: str,
    units: Sequence[Unit],
    progress: Progress | None = None,
    rate: float | None = None,
    ledger: dict[Position, tuple[str, str | None]] | None = None,
    down_grace_s: float = DOWN_GRACE_S,
) -> dict[Position, Any]:
    """PutRecords in chunks of up to 500, resending only failed entries, as fast as possible or paced at
    `rate` records/s (chunks every ~100 ms); the ledger maps positions to (label, poison kind).

    A chunk the emulator does not answer is sent again for up to `down_grace_s` (its records may then
    be in the stream twice: the first copy's results are counted as foreign), then EmulatorFaultError is
    raised; `ledger`, when given, holds every acknowledged record either way.
    """
    ledger = {} if ledger is None else ledger
    total = sum(len(u.items) for u in units)
    done = 0
    step = _PUT_MAX if not rate else max(1, min(_PUT_MAX, int(rate / 10)))
    began = time.monotonic()
    for start in range(0, len(units), step):
        if rate:
            ahead = began + done / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        pending = list(units[start : start + step])
        attempt = 0
        silent_since: float | None = None
        while pending:
            try:
                resp = kinesis.put_records(
                    StreamName=stream, Records=[{"Data": u.data, "PartitionKey": u.key} for u in pending]
                )
            except Exception as exc:
                fault = emulator_fault(exc, None)
                if fault is None or fault.lost_state:
                    raise
                silent_since = silent_since or time.monotonic()
                if time.monotonic() - silent_since > down_grace_s:
                    raise
                time.sleep(0.5)
                continue
            silent_since = None
            retry = []
            for unit, result in zip(pending, resp["Records"], strict=True):
                if "ErrorCode" in result:
                    retry.append(unit)
                    continue
                shard, seq = str(result["ShardId"]), str(result["SequenceNumber"])
                for sub, item in enumerate(unit.items):
                    ledger[(shard, seq, sub if unit.aggregated else None)] = item
                done += len(unit.items)
            pending = retry
            if pending:
                attempt += 1
                if attempt > 20:
                    raise RuntimeError(f"producer: {len(pending)} records still rejected after {attempt} attempts")
                time.sleep(min(1.0, 0.05 * 2**attempt))
        if progress:
            progress("produce", done, total)
    return ledger


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
                if _error_code(exc) not in _THROTTLED:
                    raise
                time.sleep(0.2)
                continue
            for r in resp["Records"]:
                out[(sid, str(r["SequenceNumber"]))] = _epoch(r["ApproximateArrivalTimestamp"])
            if not resp["Records"]:
                if resp.get("MillisBehindLatest", 0) == 0:
                    break
                empty += 1
            it = resp.get("NextShardIterator")
    return out


# -- collector -----------------------------------------------------------------------------------
def _position(body: Mapping[str, Any]) -> Position:
    src = body.get("source", body)
    sub = src.get("sub_sequence_number")
    return (str(src.get("shard_id")), str(src.get("sequence_number")), None if sub is None else int(sub))


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
            self._positions |= _skipped_positions(ledger, self.batch_failures)

    def _read_stream(self) -> int:
        n = 0
        stream = self.res.topology.output_stream.name
        for sid, it in list(self._iterators.items()):
            if not it:
                continue
            try:
                resp = self.kinesis.get_records(ShardIterator=it, Limit=10_000)
            except Exception as exc:
                code = _error_code(exc)
                if code in _THROTTLED:
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
                self._positions.update(_position(body) for _, body in rows)
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
                    self._positions.update(_position(b) for b in bodies)
                elif self._ledger is not None:
                    self._positions |= _skipped_positions(self._ledger, bodies)
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
        ledger: dict[Position, Any] = self._ledger or {}
        topo = self.res.topology
        s = PipelineSummary(endpoint, topo.input_stream.shards, topo.output_stream.shards)
        s.records_in = len(ledger)
        s.poison_in = sum(1 for _, kind in ledger.values() if kind)
        s.kpl_user_records = sum(1 for k in ledger if k[2] is not None)
        seen: set[Position] = set()

        def claim(pos: Position) -> tuple[str, str | None] | None:
            """The ledger entry of a first result for `pos`; None (counted) for a duplicate or a foreign one."""
            if pos in seen:
                s.duplicates += 1
                return None
            seen.add(pos)
            item = ledger.get(pos)
            if item is None:
                s.foreign += 1
            return item

        latencies: list[float] = []
        last = started
        with self.lock:
            outputs, dead, failures = list(self.outputs), list(self.dead), list(self.batch_failures)
        for read_at, body in outputs:
            pos = _position(body)
            item = claim(pos)
            if item is None:
                continue
            s.predicted += 1
            if item[1] is not None:
                s.misrouted += 1
            if body.get("id") != item[0]:
                s.id_mismatches += 1
            last = max(last, read_at)
            arrival = arrivals.get((pos[0], pos[1]))
            if arrival is not None:
                latencies.append((read_at - arrival) * 1000)
            if len(s.samples) < n_samples:
                s.samples.append(
                    {"id": body.get("id"), "prediction": body.get("prediction"), "model": body.get("model")}
                )
        reasons: Counter[str] = Counter()
        for body in dead:
            item = claim(_position(body))
            if item is None:
                continue
            if item[1] is None:
                s.misrouted += 1
            s.dead_lettered += 1
            reasons[str(body.get("reason"))] += 1
        skipped = _skipped_positions(ledger, failures) - seen
        s.skipped_on_failure = len(skipped)
        s.lost = len(ledger.keys() - seen - skipped)
        s.complete = s.lost == 0
        s.dlq_reasons = dict(sorted(reasons.items()))
        s.produce_seconds = round(produce_seconds, 3)
        s.seconds = round(max(last, self.last_read) - started, 3)
        s.throughput_rps = round(s.records_in / s.seconds, 1) if s.seconds > 0 else 0.0
        if latencies:
            latencies.sort()
            s.latency_ms_p50 = round(_pct(latencies, 50), 1)
            s.latency_ms_p99 = round(_pct(latencies, 99), 1)
            s.latency_ms_max = round(latencies[-1], 1)
        with poller.lock:
            st = poller.stats
            s.poller = {
                "invocations": st.invocations,
                "function_errors": st.function_errors,
                "partial_failures": st.partial_failures,
                "bisections": st.bisections,
                "retries": st.retries,
                "records_to_on_failure": st.records_to_on_failure,
                "handler_seconds": round(st.handler_seconds, 3),
                "errors": list(poller.errors) + self.errors,
            }
        return s


def _pct(sorted_values: Sequence[float], q: float) -> float:
    k = (len(sorted_values) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def _skipped_positions(ledger: Mapping[Position, Any], failures: Sequence[Mapping[str, Any]]) -> set[Position]:
    """Positions covered by on-failure messages (Lambda names a shard and a sequence number range)."""
    out: set[Position] = set()
    for message in failures:
        info = message.get("KinesisBatchInfo", {})
        shard = info.get("shardId")
        lo, hi = int(info.get("startSequenceNumber", 0)), int(info.get("endSequenceNumber", -1))
        out.update(p for p in ledger if p[0] == shard and lo <= int(p[1]) <= hi)
    return out


def run_pipeline(
    *,
    records: int = 10_000,
    endpoint_url: str | None = None,
    shards: int | None = None,
    poison_rate: float = 0.01,
    kpl_share: float = 0.05,
    seed: int = 42,
    ctx: Mapping[str, Any] | None = None,
    model_dir: str | Path = DEFAULT_MODEL_DIR,
    release: str | Path = DEFAULT_RELEASE,
    timeout_s: float | None = None,
    progress: Progress | None = None,
    region: str = DEFAULT_REGION,
    rate: float | None = None,
) -> PipelineSummary:
    """Set up, produce, score and account for `records` records on `endpoint_url` (None: embedded moto)."""
    with LocalCloud(
        endpoint_url=endpoint_url, ctx=ctx, shards=shards, model_dir=model_dir, release=release, region=region
    ) as cloud:
        return cloud.run(
            records,
            poison_rate=poison_rate,
            kpl_share=kpl_share,
            seed=seed,
            timeout_s=timeout_s,
            progress=progress,
            rate=rate,
        )
