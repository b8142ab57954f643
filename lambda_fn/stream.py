"""One Kinesis batch end to end: decode, score once, write predictions and dead letters, report failures.

Invariant: every user record becomes exactly one output record or one dead-letter entry, or it is
reported in `batchItemFailures` (so Lambda re-delivers it). Nothing is dropped and nothing is silent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from lambda_fn.config import Metric, service_name
from lambda_fn.model_store import LoadedModel
from lambda_fn.records import Reason, UserRecord, decode_event, map_payloads
from lambda_fn.rollout import Shadow, ShadowInput, VariantEmitter, Variants, emit_shadow, emit_variant_stats
from lambda_fn.scoring import Hook, score_batch
from lambda_fn.sinks import SQS_MAX_BYTES, Entry, Sink, encode_json

logger = Logger(service=service_name(), child=True)
_MAX_PARTITION_KEY = 256
# One encoder for the process: json.dumps with custom separators builds a new encoder on every call.
_quote = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
_DLQ_DATA_BUDGET = SQS_MAX_BYTES - 8 * 1024


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
    # Rollout (lambda_fn.rollout): A/B variants replace `model` for scoring; a shadow scores beside it.
    variants: Variants | None = None
    shadow: Shadow | None = None
    variant_metrics: VariantEmitter | None = None


@dataclass(slots=True)
class BatchSummary:
    records: int
    scored: int
    dead_lettered: int
    failed: int
    retries: int
    seconds: float


def _output_entry(i: int, rec: UserRecord, prediction: Any, model_json: str) -> Entry:
    """Encode one prediction record; the common case (string id, number prediction) skips the generic encoder."""
    rid = rec.record_id
    key = _route_key(rec)
    if not key or len(key) > _MAX_PARTITION_KEY:
        key = hashlib.sha256(key.encode()).hexdigest() if key else rec.sequence_number or "0"
    if type(prediction) is float and math.isfinite(prediction):
        pred = repr(prediction)
    elif type(prediction) is int:
        pred = str(prediction)
    else:
        pred = encode_json(prediction)
    sub = "null" if rec.sub_sequence_number is None else str(rec.sub_sequence_number)
    seq = rec.sequence_number
    seq_json = '"' + seq + '"' if seq.isdigit() else _quote(seq)
    data = (
        f'{{"id":{_json_scalar(rid)},"prediction":{pred},"model":{model_json},'
        f'"source":{{"shard_id":{_quote(rec.shard_id)},"sequence_number":{seq_json},'
        f'"sub_sequence_number":{sub},"partition_key":{_quote(rec.partition_key)}}}}}'
    )
    return Entry(ref=i, data=data.encode(), key=key)


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


def _json_scalar(value: Any) -> str:
    if type(value) is str:
        return _quote(value)
    if value is None:
        return "null"
    return encode_json(value)


def dead_letter_body(rec: UserRecord, model: Mapping[str, str] | None) -> bytes:
    """The DLQ message: the original data plus where it came from and why it failed."""
    data = rec.raw if rec.sub_sequence_number is None else base64.b64encode(rec.data or b"").decode()
    body: dict[str, Any] = {
        "reason": rec.reason,
        "detail": (rec.detail or "")[:2000],
        "data": data,
        "data_encoding": "base64",
        "event_source_arn": rec.event_source_arn,
        "shard_id": rec.shard_id,
        "sequence_number": rec.sequence_number,
        "sub_sequence_number": rec.sub_sequence_number,
        "partition_key": rec.partition_key,
        "id": rec.record_id if isinstance(rec.record_id, str | int | float) else None,
        "approximate_arrival": rec.arrival,
        "model": dict(model) if model else None,
        "failed_at": datetime.now(UTC).isoformat(),
    }
    if len(data) > _DLQ_DATA_BUDGET:
        raw = base64.b64decode(data)
        body["data"] = data[:_DLQ_DATA_BUDGET]
        body["data_truncated"] = True
        body["data_size"] = len(raw)
        body["data_sha256"] = hashlib.sha256(raw).hexdigest()
    return encode_json(body).encode()


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
    keys = [_route_key(records[i]) for i in live] if rt.variants is not None or rt.shadow is not None else []
    # With A/B variants each live record is scored by its variant's model and labelled with it.
    row_identity: list[dict[str, str]] | None = None
    if rt.variants is None:
        model = rt.model()
        result = score_batch(features, model, rt.hook)
        identity: dict[str, str] | None = model.identity
        model_json = encode_json(identity)
        jsons = [model_json]
        arm_of: list[int] = [0] * len(live)
    else:
        routed = rt.variants.score(features, keys, rt.hook)
        result, identity, arm_of = routed.result, None, routed.arm_of
        jsons = [encode_json(x) for x in routed.identities]
        row_identity = [routed.identities[a] for a in arm_of]
    outputs: list[Entry] = []
    failed_identity: dict[int, dict[str, str]] = {}
    for j, i in enumerate(live):
        err = result.errors.get(j)
        if err is not None:
            records[i].fail(err.reason, err.detail)
            if row_identity is not None:
                failed_identity[i] = row_identity[j]
        else:
            outputs.append(_output_entry(i, records[i], result.predictions[j], jsons[arm_of[j]]))

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

    failed_refs = set(put.failed) | set(dlq.failed)
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
        dead_lettered=len(dead) - len(dlq.failed),
        failed=len(failed_refs),
        retries=put.retries + dlq.retries,
        seconds=time.perf_counter() - started,
    )
    _emit(metrics, summary, result.predict_seconds)
    if rt.variants is not None and rt.variant_metrics is not None:
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
            **({"variants": {s.name: s.rows for s in routed.stats}} if rt.variants is not None else {}),
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
    metrics.add_metric(name=Metric.BATCH_LATENCY, unit=MetricUnit.Milliseconds, value=s.seconds * 1000)
    metrics.add_metric(name=Metric.PREDICT_LATENCY, unit=MetricUnit.Milliseconds, value=predict_seconds * 1000)
