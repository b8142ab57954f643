"""One Kinesis batch end to end: decode, score once, write predictions and dead letters, report failures.

Invariant: every user record becomes exactly one output record or one dead-letter entry, or it is
reported in `batchItemFailures` (so Lambda re-delivers it). Nothing is dropped and nothing is silent.
A fault of one record (its bytes, its JSON, its id, its values, its prediction) never raises: every record
written is strict JSON with bounded fields (`lambda_fn.outputs`), so no service can refuse it and no
redelivery can meet the same fault again. Only a systemic fault (the model or hook broken, a sink unreachable) raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools import Logger

from lambda_fn.config import Metric, service_name
from lambda_fn.model_store import LoadedModel
from lambda_fn.outputs import (
    dead_letter_body,
    fallback_dead_letter,
    identity_json,
    prediction_entries,
    prediction_entry,
)
from lambda_fn.records import Reason, UserRecord, decode_event, map_payloads
from lambda_fn.scoring import Hook
from lambda_fn.shadow import ShadowInput, ShadowRun, ShadowScorer, emit_shadow
from lambda_fn.sinks import Entry, PutOutcome, Sink
from lambda_fn.variants import Routed, VariantEmitter, Variants, emit_variant_stats

if TYPE_CHECKING:  # imported only when capture is on (CAPTURE_BUCKET): zero cost otherwise
    from lambda_fn.monitoring.emit import Emitter, Pending, Scored

logger = Logger(service=service_name(), child=True)


class MetricsLike(Protocol):
    def add_metric(self, name: str, unit: Any, value: float) -> None: ...


class _NoMetrics:
    def add_metric(self, name: str, unit: Any, value: float) -> None:
        return None


@dataclass(slots=True)
class StreamRuntime:
    """What a stream batch needs; built once per container by `lambda_fn.runtime`."""

    model: Callable[[], LoadedModel]
    output: Sink
    dlq: Sink
    hook: Hook | None = None
    features_field: str | None = None
    id_field: str | None = None
    # A/B variants (lambda_fn.variants) replace `model` for scoring; a shadow (lambda_fn.shadow) scores beside it.
    variants: Variants | None = None
    shadow: ShadowScorer | None = None
    variant_metrics: VariantEmitter | None = None
    # Capture and profiles (lambda_fn.monitoring.emit), with the model= / sha256= partitions to file them under
    # (MODEL_NAME / MODEL_SHA256; None: the primary's identity). None when CAPTURE_BUCKET is unset.
    capture: Emitter | None = None
    deployment: dict[str, str] | None = None


@dataclass(slots=True)
class BatchSummary:
    records: int
    scored: int
    dead_lettered: int
    failed: int
    retries: int
    seconds: float
    rejected: int = 0  # dead letters SQS refused (each replaced by a minimal one)


def _route_key(rec: UserRecord) -> str:
    """A/B routing key: the record id, else the partition key (stable for a producer's entity)."""
    rid = rec.record_id
    return str(rid) if rid is not None and rid != "" else rec.partition_key


SOURCE_FIELDS = ("shard_id", "sequence_number", "sub_sequence_number", "partition_key")  # a record's position
_POSITION = attrgetter(*SOURCE_FIELDS)


def _source(rec: UserRecord) -> dict[str, Any]:
    return dict(zip(SOURCE_FIELDS, _POSITION(rec), strict=True))


@dataclass(slots=True)
class _Scored:
    """The batch after its model call(s): what was scored, by which arm, and the identity its records carry."""

    live: list[int]  # index in the batch of each record that reached the model, aligned with `routed.result`
    features: list[Any]
    keys: list[str]  # routing keys aligned with `live`; empty when nothing routes (the primary alone, no shadow)
    routed: Routed
    labelled: bool
    identity: dict[str, str] | None  # the one model's identity; None when labelled arms carry their own
    row_identity: list[dict[str, str]] | None  # labelled arms: the identity of each scored row's arm


@dataclass(slots=True)
class _DeadLetters:
    """What the dead-letter queue did with the batch's dead letters."""

    sent: int  # dead letters of the batch (each record with a reason)
    failed: set[int]  # refs neither sent nor replaced by a minimal dead letter: reported for retry
    rejected: int  # refused by SQS for their content (each resent as a minimal one)
    retries: int


def process_batch(
    event: Mapping[str, Any],
    rt: StreamRuntime,
    metrics: MetricsLike | None = None,
) -> dict[str, list[dict[str, str]]]:
    """Score one event; returns Lambda's partial batch response."""
    started = time.perf_counter()
    metrics = metrics or _NoMetrics()
    records = decode_event(event)
    map_payloads(records, rt.features_field, rt.id_field)
    scored = _score(records, rt)
    outputs, failed_identity = _prediction_entries(records, scored)
    # Capture and the shadow work on their own threads while the primary writes; each is waited for within its bound.
    capture = _start_capture(rt.capture, rt.deployment, records, scored) if rt.capture is not None else None
    shadow_run = _start_shadow(rt, records, scored) if rt.shadow is not None else None
    put = _write_predictions(rt.output, records, outputs)
    dead = _write_dead_letters(rt.dlq, records, failed_identity, scored.identity)
    failed_refs = set(put.failed) | dead.failed
    failures = _batch_item_failures(records, failed_refs)

    summary = BatchSummary(
        records=len(records),
        scored=len(outputs) - len(put.failed) - len(put.too_large),
        dead_lettered=dead.sent - len(dead.failed),
        failed=len(failed_refs),
        retries=put.retries + dead.retries,
        seconds=time.perf_counter() - started,
        rejected=dead.rejected,
    )
    _emit(metrics, summary, scored.routed.result.predict_seconds)
    if scored.labelled and rt.variant_metrics is not None:
        emit_variant_stats(scored.routed.stats, rt.variant_metrics)
    if capture is not None:
        from lambda_fn.monitoring.emit import finish

        finish(capture, metrics)
    if shadow_run is not None:
        emit_shadow(shadow_run.wait(), metrics)
    _log_batch(records, summary, scored)
    if failures:
        logger.warning("records reported for retry", extra={"batch_item_failures": len(failures)})
    return {"batchItemFailures": failures}


def _score(records: list[UserRecord], rt: StreamRuntime) -> _Scored:
    """One model call for the batch's live records (one per A/B arm present)."""
    live = [i for i, r in enumerate(records) if r.reason is None]
    features = [records[i].features for i in live]
    # One path: the primary is the one unlabelled arm; labelled A/B arms each score their share and label it.
    arms = rt.variants if rt.variants is not None else Variants.primary(rt.model)
    keys = [_route_key(records[i]) for i in live] if arms.labelled or rt.shadow is not None else []
    routed = arms.score(features, keys, rt.hook, finite=True)
    if arms.labelled:
        row_identity = [routed.identities[a] for a in routed.arm_of]
        return _Scored(live, features, keys, routed, True, None, row_identity)
    return _Scored(live, features, keys, routed, False, routed.identities[0], None)


def _prediction_entries(records: list[UserRecord], s: _Scored) -> tuple[list[Entry], dict[int, dict[str, str]]]:
    """The output entry of each scored record; a record whose row or prediction failed is failed instead.

    Also returns, for labelled arms, the identity of the arm behind each such failure (for its dead letter).
    The common batch is encoded column by column (`outputs.prediction_entries`), any other record by record.
    """
    result, arm_of, keys = s.routed.result, s.routed.arm_of, s.keys
    jsons = [identity_json(x) for x in s.routed.identities]
    errors = result.errors
    good = [j for j in range(len(s.live)) if j not in errors] if errors else range(len(s.live))
    bulk = prediction_entries(
        [s.live[j] for j in good],
        [records[s.live[j]] for j in good],
        result.predictions if not errors else [result.predictions[j] for j in good],
        jsons[0] if len(jsons) == 1 else [jsons[arm_of[j]] for j in good],
        [keys[j] for j in good] if keys else None,
    )
    if bulk is None:
        return _entries_one_by_one(records, s, jsons)
    failed_identity: dict[int, dict[str, str]] = {}
    for j, err in errors.items():
        i = s.live[j]
        records[i].fail(err.reason, err.detail)
        if s.row_identity is not None:
            failed_identity[i] = s.row_identity[j]
    return bulk, failed_identity


def _entries_one_by_one(
    records: list[UserRecord], s: _Scored, jsons: list[str]
) -> tuple[list[Entry], dict[int, dict[str, str]]]:
    """`_prediction_entries` record by record: any id, prediction and key (`outputs.prediction_entry`)."""
    result, arm_of, keys, row_identity = s.routed.result, s.routed.arm_of, s.keys, s.row_identity
    outputs: list[Entry] = []
    failed_identity: dict[int, dict[str, str]] = {}
    for j, i in enumerate(s.live):
        err = result.errors.get(j)
        if err is None:
            key = keys[j] if keys else _route_key(records[i])
            entry = prediction_entry(i, records[i], result.predictions[j], jsons[arm_of[j]], key)
            if type(entry) is Entry:
                outputs.append(entry)
                continue
            records[i].fail(Reason.MODEL_ERROR, str(entry))
        else:
            records[i].fail(err.reason, err.detail)
        if row_identity is not None:
            failed_identity[i] = row_identity[j]
    return outputs, failed_identity


class _Lazy(Sequence[Any]):
    """`fn(records[at[i]])` computed when read: capture reads only the rows it samples."""

    def __init__(self, fn: Callable[[UserRecord], Any], records: list[UserRecord], at: list[int]) -> None:
        self._fn, self._records, self._at = fn, records, at

    def __len__(self) -> int:
        return len(self._at)

    def __getitem__(self, i: int) -> Any:  # type: ignore[override]
        return self._fn(self._records[self._at[i]])


class _Sources(_Lazy):
    """The records' positions (`_source` of each), also by field for the rows capture samples (`columns`: no dict
    per record; `lambda_fn.monitoring.emit.SourceColumns`)."""

    def __init__(self, records: list[UserRecord], at: list[int]) -> None:
        super().__init__(_source, records, at)

    def columns(self, rows: Sequence[int]) -> dict[str, list[Any]]:
        records, at = self._records, self._at
        positions = map(_POSITION, [records[at[i]] for i in rows])
        values = list(zip(*positions, strict=True)) or [()] * len(SOURCE_FIELDS)
        return {name: list(v) for name, v in zip(SOURCE_FIELDS, values, strict=True)}


def _features_of(rec: UserRecord) -> Any:
    return rec.features


def _capture_keys(records: list[UserRecord], live: list[int]) -> list[str]:
    """Each live record's sampling key: its id, else its stream position (shard:sequence[/sub])."""
    from lambda_fn.monitoring.emit import capture_key

    ids = [r.record_id for r in records] if len(live) == len(records) else [records[i].record_id for i in live]
    if set(map(type, ids)) == {str} and all(ids):  # the usual batch (ID_FIELD set): the ids as they are
        return ids
    keys = []
    for i in live:
        rid = records[i].record_id
        keys.append(rid if type(rid) is str and rid else capture_key(rid, records[i].position))
    return keys


def _capture_parts(emitter: Emitter, records: list[UserRecord], s: _Scored, keys: list[str]) -> list[Scored]:
    from lambda_fn.monitoring.emit import Scored

    raw = emitter.config.raw
    parts = []
    for index, positions, result in s.routed.parts:
        whole = len(positions) == len(s.live)
        at = s.live if whole else [s.live[p] for p in positions]
        identity = s.routed.identities[index]
        parts.append(
            Scored(
                identity.get("variant", "primary"),
                identity,
                result,
                keys if whole else [keys[p] for p in positions],
                _Sources(records, at),
                _Lazy(_features_of, records, at) if raw else None,
            )
        )
    return parts


def _deployment(deployment: dict[str, str] | None, s: _Scored) -> dict[str, str]:
    if deployment is not None:
        return deployment
    return s.routed.identities[s.routed.parts[0][0]] if s.routed.parts else {}


def _start_capture(
    emitter: Emitter, deployment: dict[str, str] | None, records: list[UserRecord], s: _Scored
) -> Pending | None:
    """Hand the batch's scored parts to capture (never raises: a capture fault is no record's fault)."""
    try:
        keys = _capture_keys(records, s.live)
        return emitter.submit(_capture_parts(emitter, records, s, keys), _deployment(deployment, s))
    except Exception:  # capture is best effort
        logger.exception("capture could not start")
        return None


def _shadow_capture(rt: StreamRuntime, records: list[UserRecord], s: _Scored) -> Callable[[Any, Any], None] | None:
    """What the shadow calls with its model and result: its rows captured as variant `shadow` (not waited for)."""
    emitter = rt.capture
    if emitter is None:
        return None
    deployment = _deployment(rt.deployment, s)

    def on_scored(model: LoadedModel, result: Any) -> None:
        from lambda_fn.monitoring.emit import SHADOW, Scored

        keys = _capture_keys(records, s.live)
        raw = _Lazy(_features_of, records, s.live) if emitter.config.raw else None
        part = Scored(SHADOW, model.identity, result, keys, _Sources(records, s.live), raw)
        emitter.background([part], deployment)

    return on_scored


def _start_shadow(rt: StreamRuntime, records: list[UserRecord], s: _Scored) -> ShadowRun:
    assert rt.shadow is not None
    result = s.routed.result
    return rt.shadow.start(
        ShadowInput(
            features=s.features,
            primary=result.predictions,
            primary_ok=[j not in result.errors for j in range(len(s.live))],
            primary_model=s.identity if s.identity is not None else (s.row_identity or []),
            ids=[records[i].record_id for i in s.live],
            keys=s.keys,
            sources=[_source(records[i]) for i in s.live],
            on_scored=_shadow_capture(rt, records, s),
        )
    )


def _write_predictions(output: Sink, records: list[UserRecord], outputs: list[Entry]) -> PutOutcome:
    """PutRecords the predictions; one over Kinesis' record limit turns its record into a dead letter."""
    put = output.put(outputs)
    for i in put.too_large:
        records[i].fail(Reason.OUTPUT_TOO_LARGE, "the prediction record exceeds Kinesis' 1 MiB record limit")
    return put


def _write_dead_letters(
    dlq: Sink,
    records: list[UserRecord],
    failed_identity: dict[int, dict[str, str]],
    identity: dict[str, str] | None,
) -> _DeadLetters:
    """One dead letter per record with a reason, naming the model (or arm) that saw it."""
    dead = [
        Entry(i, dead_letter_body(r, failed_identity.get(i, identity)), r.reason or "")
        for i, r in enumerate(records)
        if r.reason
    ]
    outcome = dlq.put(dead)
    failed = set(outcome.failed)
    if outcome.rejected:
        # Refused for its content: resend it as a minimal dead letter, once (the same body would be refused
        # on every redelivery). Only if that fails too is the record reported for retry.
        logger.warning(
            "SQS refused dead letters; sending minimal ones", extra={"refused": list(outcome.rejected.values())}
        )
        again = dlq.put(
            [
                Entry(i, fallback_dead_letter(records[i], why), records[i].reason or "")
                for i, why in outcome.rejected.items()
            ]
        )
        failed.update(again.failed, again.rejected)
    return _DeadLetters(sent=len(dead), failed=failed, rejected=len(outcome.rejected), retries=outcome.retries)


def _batch_item_failures(records: list[UserRecord], refs: set[int]) -> list[dict[str, str]]:
    """Lambda's `batchItemFailures`: the sequence number of each failed record, once (KPL records share one)."""
    seen: set[str] = set()
    failures: list[dict[str, str]] = []
    for i in sorted(refs):
        seq = records[i].sequence_number
        if seq not in seen:
            seen.add(seq)
            failures.append({"itemIdentifier": seq})
    return failures


def _log_batch(records: list[UserRecord], summary: BatchSummary, s: _Scored) -> None:
    reasons: dict[str, int] = {}
    for r in records:
        if r.reason:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
    result = s.routed.result
    logger.info(
        "batch scored",
        extra={
            "records": summary.records,
            "scored": summary.scored,
            "dead_lettered": summary.dead_lettered,
            "dead_letter_reasons": reasons,
            "reported_failed": summary.failed,
            "output_retries": summary.retries,
            "predict_calls": result.predict_calls,
            "batch_ms": round(summary.seconds * 1000, 2),
            "model": s.identity,
            **({"variants": {a.name: a.rows for a in s.routed.stats}} if s.labelled else {}),
        },
    )


def _emit(metrics: MetricsLike, s: BatchSummary, predict_seconds: float) -> None:
    from aws_lambda_powertools.metrics import MetricUnit

    metrics.add_metric(name=Metric.RECORDS_IN, unit=MetricUnit.Count, value=s.records)
    metrics.add_metric(name=Metric.RECORDS_SCORED, unit=MetricUnit.Count, value=s.scored)
    metrics.add_metric(name=Metric.RECORDS_DEAD_LETTERED, unit=MetricUnit.Count, value=s.dead_lettered)
    metrics.add_metric(name=Metric.RECORDS_FAILED, unit=MetricUnit.Count, value=s.failed)
    metrics.add_metric(name=Metric.OUTPUT_RETRIES, unit=MetricUnit.Count, value=s.retries)
    metrics.add_metric(name=Metric.DEAD_LETTERS_REJECTED, unit=MetricUnit.Count, value=s.rejected)
    metrics.add_metric(name=Metric.BATCH_LATENCY, unit=MetricUnit.Milliseconds, value=s.seconds * 1000)
    metrics.add_metric(name=Metric.PREDICT_LATENCY, unit=MetricUnit.Milliseconds, value=predict_seconds * 1000)
