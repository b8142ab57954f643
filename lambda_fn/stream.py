"""One Kinesis batch end to end: decode, score once, write predictions and dead letters, report failures.

Invariant: every user record becomes exactly one output record or one dead-letter entry, or it is
reported in `batchItemFailures` (so Lambda re-delivers it). Nothing is dropped and nothing is silent.
A fault of one record (its bytes, its JSON, its id, its values, its prediction) never raises: every field
written is strict JSON and bounded (`lambda_fn.wire`), so no service can refuse it and no redelivery can
meet the same fault again. Only a systemic fault (the model or hook broken, a sink unreachable) raises.
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
from lambda_fn.scoring import Hook, describe, score_batch
from lambda_fn.sinks import SQS_MAX_BYTES, Entry, Sink, encode_json
from lambda_fn.wire import (
    bounded_json,
    bounded_text,
    finite_or_none,
    fit_text,
    partition_key,
    utf8,
)

logger = Logger(service=service_name(), child=True)
# One encoder for the process: json.dumps with custom separators builds a new encoder on every call.
_quote = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
# A dead letter is at most this long (ASCII), whatever it carries: SQS' limit less room for its attribute.
DLQ_BODY_MAX = SQS_MAX_BYTES - 1024
_META_BYTES = 512  # ARN, shard id, sequence number as written (Lambda's own, bounded anyway)


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
    rejected: int = 0  # dead letters SQS refused (each replaced by a minimal one)


def _output_entry(i: int, rec: UserRecord, prediction: Any, model_json: str) -> Entry | str:
    """Encode one prediction record, or say why it cannot be written (a prediction strict JSON cannot carry).

    The common case (string id, number prediction) skips the generic encoder.
    """
    if type(prediction) is float and math.isfinite(prediction):
        pred = repr(prediction)
    elif type(prediction) is int:
        pred = str(prediction)
    else:
        try:
            pred = encode_json(prediction)
        except (ValueError, TypeError, RecursionError) as exc:
            return f"the prediction cannot be written as strict JSON: {describe(exc)}"
    rid, rid_digest = bounded_json(rec.record_id)
    digest = "" if rid_digest is None else f',"id_sha256":"{rid_digest}"'
    sub = "null" if rec.sub_sequence_number is None else str(rec.sub_sequence_number)
    seq = rec.sequence_number
    seq_json = '"' + seq + '"' if seq.isdigit() else _quote(seq)
    data = (
        f'{{"id":{rid}{digest},"prediction":{pred},"model":{model_json},'
        f'"source":{{"shard_id":{_quote(rec.shard_id)},"sequence_number":{seq_json},'
        f'"sub_sequence_number":{sub},"partition_key":{fit_text(rec.partition_key)[1]}}}}}'
    )
    return Entry(ref=i, data=data.encode(), key=partition_key(_route_key(rec), seq))


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


def identity_json(identity: Mapping[str, str] | None) -> str:
    """A model identity as strict JSON with bounded values (they come from settings and MLmodel metadata)."""
    if identity is None:
        return "null"
    return encode_json({k: bounded_text(str(v), _META_BYTES) for k, v in identity.items()})


def _data_of(rec: UserRecord) -> tuple[str, str, bytes]:
    """(data as written, its encoding, the bytes it stands for): the record's base64, or its text if it had none."""
    if rec.data is not None:
        data = rec.raw if rec.sub_sequence_number is None and type(rec.raw) is str else None
        return data or base64.b64encode(rec.data).decode(), "base64", rec.data
    text = rec.raw if type(rec.raw) is str else str(rec.raw)  # not base64: carried as received
    return text, "text", utf8(text)


def dead_letter_body(rec: UserRecord, model: Mapping[str, str] | None) -> bytes:
    """The DLQ message: the original data plus where it came from and why it failed, at most DLQ_BODY_MAX bytes.

    Every field is bounded; the data takes what is left and, when cut, carries its size and sha256.
    """
    data, encoding, raw = _data_of(rec)
    rid, rid_digest = bounded_json(rec.record_id)
    body: dict[str, Any] = {
        "reason": rec.reason,
        "detail": bounded_text(rec.detail or ""),
        "data": "",
        "data_encoding": encoding,
        "event_source_arn": bounded_text(rec.event_source_arn, _META_BYTES),
        "shard_id": bounded_text(rec.shard_id, _META_BYTES),
        "sequence_number": bounded_text(rec.sequence_number, _META_BYTES),
        "sub_sequence_number": rec.sub_sequence_number,
        "partition_key": bounded_text(rec.partition_key),
        "id": json.loads(rid),
        "approximate_arrival": finite_or_none(rec.arrival),
        "model": json.loads(identity_json(model)),
        "failed_at": datetime.now(UTC).isoformat(),
    }
    if rid_digest is not None:
        body["id_sha256"] = rid_digest
    head = encode_json(body)
    literal = _quote(data) if encoding == "text" else f'"{data}"'  # base64 needs no escaping
    if len(head) + len(literal) - 2 > DLQ_BODY_MAX:
        body["data_truncated"] = True
        body["data_size"] = len(raw)
        body["data_sha256"] = hashlib.sha256(raw).hexdigest()
        room = DLQ_BODY_MAX - len(encode_json(body))
        body["data"] = fit_text(data, room)[0] if encoding == "text" else data[: max(0, room) // 4 * 4]
    else:
        body["data"] = data
    return encode_json(body).encode()


def fallback_dead_letter(rec: UserRecord, refused: str) -> bytes:
    """A minimal dead letter for one SQS refused: where the record is and its digest, nothing a producer chose.

    Sent once in place of the refused one, so the record is neither lost nor retried into the same refusal.
    """
    _, encoding, raw = _data_of(rec)
    body = {
        "reason": rec.reason,
        "detail": bounded_text(
            f"SQS refused the full dead letter ({refused}); this one carries the record's position and digest: "
            "read the record from the input stream",
            1024,
        ),
        "fallback": True,
        "data_encoding": encoding,
        "data_size": len(raw),
        "data_sha256": hashlib.sha256(raw).hexdigest(),
        "event_source_arn": bounded_text(rec.event_source_arn, _META_BYTES),
        "shard_id": bounded_text(rec.shard_id, _META_BYTES),
        "sequence_number": bounded_text(rec.sequence_number, _META_BYTES),
        "sub_sequence_number": rec.sub_sequence_number,
        "partition_key_sha256": hashlib.sha256(utf8(rec.partition_key)).hexdigest(),
        "failed_at": datetime.now(UTC).isoformat(),
    }
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
        result = score_batch(features, model, rt.hook, finite=True)
        identity: dict[str, str] | None = model.identity
        jsons = [identity_json(identity)]
        arm_of: list[int] = [0] * len(live)
    else:
        routed = rt.variants.score(features, keys, rt.hook, finite=True)
        result, identity, arm_of = routed.result, None, routed.arm_of
        jsons = [identity_json(x) for x in routed.identities]
        row_identity = [routed.identities[a] for a in arm_of]
    outputs: list[Entry] = []
    failed_identity: dict[int, dict[str, str]] = {}
    for j, i in enumerate(live):
        err = result.errors.get(j)
        if err is None:
            entry = _output_entry(i, records[i], result.predictions[j], jsons[arm_of[j]])
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
    metrics.add_metric(name=Metric.DEAD_LETTERS_REJECTED, unit=MetricUnit.Count, value=s.rejected)
    metrics.add_metric(name=Metric.BATCH_LATENCY, unit=MetricUnit.Milliseconds, value=s.seconds * 1000)
    metrics.add_metric(name=Metric.PREDICT_LATENCY, unit=MetricUnit.Milliseconds, value=predict_seconds * 1000)
