"""Accounting for one run: every user record of the ledger is predicted, dead-lettered, skipped (inside an
on-failure range) or lost; plus duplicates, misrouted and foreign results, throughput and end-to-end
latency (reader's clock minus the input record's approximate arrival). Pure: no client, no thread.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from servingkit.localcloud.traffic import Position

if TYPE_CHECKING:
    from infra.topology import Topology
    from servingkit.localcloud.poller import KinesisPoller


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


def position(body: Mapping[str, Any]) -> Position:
    """The input position a prediction or a dead letter names (its `source`)."""
    src = body.get("source", body)
    sub = src.get("sub_sequence_number")
    return (str(src.get("shard_id")), str(src.get("sequence_number")), None if sub is None else int(sub))


def skipped_positions(ledger: Mapping[Position, Any], failures: Sequence[Mapping[str, Any]]) -> set[Position]:
    """Positions covered by on-failure messages (Lambda names a shard and a sequence number range)."""
    out: set[Position] = set()
    for message in failures:
        info = message.get("KinesisBatchInfo", {})
        shard = info.get("shardId")
        lo, hi = int(info.get("startSequenceNumber", 0)), int(info.get("endSequenceNumber", -1))
        out.update(p for p in ledger if p[0] == shard and lo <= int(p[1]) <= hi)
    return out


def account(
    ledger: Mapping[Position, Any],
    *,
    outputs: Sequence[tuple[float, dict[str, Any]]],
    dead: Sequence[dict[str, Any]],
    failures: Sequence[Mapping[str, Any]],
    topology: Topology,
    endpoint: str,
    started: float,
    last_read: float,
    produce_seconds: float,
    poller: KinesisPoller,
    arrivals: Mapping[tuple[str, str], float],
    n_samples: int,
    errors: Sequence[str] = (),
) -> PipelineSummary:
    """Account for `ledger` against everything read: `outputs` as (read at, body), dead letters and
    on-failure messages; `errors` are the reader's own, reported beside the poller's."""
    topo = topology
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
    for read_at, body in outputs:
        pos = position(body)
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
            s.samples.append({"id": body.get("id"), "prediction": body.get("prediction"), "model": body.get("model")})
    reasons: Counter[str] = Counter()
    for body in dead:
        item = claim(position(body))
        if item is None:
            continue
        if item[1] is None:
            s.misrouted += 1
        s.dead_lettered += 1
        reasons[str(body.get("reason"))] += 1
    skipped = skipped_positions(ledger, failures) - seen
    s.skipped_on_failure = len(skipped)
    s.lost = len(ledger.keys() - seen - skipped)
    s.complete = s.lost == 0
    s.dlq_reasons = dict(sorted(reasons.items()))
    s.produce_seconds = round(produce_seconds, 3)
    s.seconds = round(max(last, last_read) - started, 3)
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
            "errors": list(poller.errors) + list(errors),
        }
    return s


def _pct(sorted_values: Sequence[float], q: float) -> float:
    k = (len(sorted_values) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)
