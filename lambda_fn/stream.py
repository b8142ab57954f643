"""One Kinesis batch end to end: decode, score once, write predictions and dead letters, report failures.

Invariant: every user record becomes exactly one output record or one dead-letter entry, or it is
reported in `batchItemFailures` (so Lambda re-delivers it). Nothing is dropped and nothing is silent.
A fault of one record (its bytes, its JSON, its id, its values, its prediction) never raises: every record
written is strict JSON with bounded fields (`lambda_fn.outputs`), so no service can refuse it and no
redelivery can meet the same fault again. Only a systemic fault (the model or hook broken, a sink unreachable) raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from lambda_fn.config import Metric, service_name
from lambda_fn.model_store import LoadedModel
from lambda_fn.outputs import dead_letter_body, fallback_dead_letter, identity_json, prediction_entry
from lambda_fn.records import Reason, UserRecord, decode_event, map_payloads
from lambda_fn.scoring import Hook
from lambda_fn.shadow import ShadowInput, ShadowScorer, emit_shadow
from lambda_fn.sinks import Entry, Sink
from lambda_fn.variants import VariantEmitter, Variants, emit_variant_stats

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


def _source(rec: UserRecord) -> dict[str, Any]:
    return {
        "shard_id": rec.shard_id,
        "sequence_number": rec.sequence_number,
        "sub_sequence_number": rec.sub_sequence_number,
        "partition_key": rec.partition_key,
    }


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

    live = [i for i, r in enumerate(records) if r.reason is None]
    features = [records[i].features for i in live]
    # One path: the primary is the one unlabelled arm; labelled A/B arms each score their share and label it.
    arms = rt.variants if rt.variants is not None else Variants.primary(rt.model)
    keys = [_route_key(records[i]) for i in live] if arms.labelled or rt.shadow is not None else []
    routed = arms.score(features, keys, rt.hook, finite=True)
    result, arm_of = routed.result, routed.arm_of
    jsons = [identity_json(x) for x in routed.identities]
    identity: dict[str, str] | None = None if arms.labelled else routed.identities[0]
    row_identity = [routed.identities[a] for a in arm_of] if arms.labelled else None
    outputs: list[Entry] = []
    failed_identity: dict[int, dict[str, str]] = {}
    for j, i in enumerate(live):
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

    # The shadow works on its own thread while the primary writes; it is waited for within its bound.
    shadow_run = None
    if rt.shadow is not None:
        shadow_run = rt.shadow.start(
            ShadowInput(
                features=features,
                primary=result.predictions,
                primary_ok=[j not in result.errors for j in range(len(live))],
                primary_model=identity if identity is not None else (row_identity or []),
                ids=[records[i].record_id for i in live],
                keys=keys,
                sources=[_source(records[i]) for i in live],
            )
        )

    put = rt.output.put(outputs)
    for i in put.too_large:
        records[i].fail(Reason.OUTPUT_TOO_LARGE, "the prediction record exceeds Kinesis' 1 MiB record limit")

    dead = [
        Entry(i, dead_letter_body(r, failed_identity.get(i, identity)), r.reason or "")
        for i, r in enumerate(records)
        if r.reason
    ]
    dlq = rt.dlq.put(dead)
    dlq_failed = set(dlq.failed)
    if dlq.rejected:
        # Refused for its content: resend it as a minimal dead letter, once (the same body would be refused
        # on every redelivery). Only if that fails too is the record reported for retry.
        logger.warning("SQS refused dead letters; sending minimal ones", extra={"refused": list(dlq.rejected.values())})
        again = rt.dlq.put(
            [
                Entry(i, fallback_dead_letter(records[i], why), records[i].reason or "")
                for i, why in dlq.rejected.items()
            ]
        )
        dlq_failed.update(again.failed, again.rejected)

    failed_refs = set(put.failed) | dlq_failed
    seen: set[str] = set()
    failures: list[dict[str, str]] = []
    for i in sorted(failed_refs):
        seq = records[i].sequence_number
        if seq not in seen:
            seen.add(seq)
            failures.append({"itemIdentifier": seq})

    summary = BatchSummary(
        records=len(records),
        scored=len(outputs) - len(put.failed) - len(put.too_large),
        dead_lettered=len(dead) - len(dlq_failed),
        failed=len(failed_refs),
        retries=put.retries + dlq.retries,
        seconds=time.perf_counter() - started,
        rejected=len(dlq.rejected),
    )
    _emit(metrics, summary, result.predict_seconds)
    if arms.labelled and rt.variant_metrics is not None:
        emit_variant_stats(routed.stats, rt.variant_metrics)
    if shadow_run is not None:
        emit_shadow(shadow_run.wait(), metrics)
    reasons: dict[str, int] = {}
    for r in records:
        if r.reason:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
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
            "model": identity,
            **({"variants": {s.name: s.rows for s in routed.stats}} if arms.labelled else {}),
        },
    )
    if failures:
        logger.warning("records reported for retry", extra={"batch_item_failures": len(failures)})
    return {"batchItemFailures": failures}


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
