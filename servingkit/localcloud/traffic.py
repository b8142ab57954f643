"""The local cloud's traffic: realistic rides with ~1% poison of several kinds, some inside KPL aggregates,
put on the input stream in chunks; the ledger says which user record went to which stream position.

`make_units()` makes the records, `produce()` puts them (resending only rejected entries, riding out a
short emulator pause) and returns the ledger the collector accounts against.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from servingkit.localcloud.faults import DOWN_GRACE_S, emulator_fault

Progress = Callable[[str, int, int], None]
Position = tuple[str, str, int | None]  # shard id, sequence number, sub-sequence number (KPL) or None
Ledger = dict[Position, tuple[str, str | None]]  # position -> (label, poison kind or None)
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


@dataclass(frozen=True, slots=True)
class Unit:
    """One Kinesis record to put: plain, or a KPL aggregate of several user records."""

    data: bytes
    key: str
    items: tuple[tuple[str, str | None], ...]  # (label, poison kind or None) per user record, in order
    aggregated: bool = False


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


def produce(
    kinesis: Any,
    stream: str,
    units: Sequence[Unit],
    progress: Progress | None = None,
    rate: float | None = None,
    ledger: Ledger | None = None,
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
