"""Every record the kit writes, encoded in one place: predictions, dead letters, and shadow records.

Each is strict JSON (the one encoder, `wire.encode_json`: never NaN or Infinity) with every field bounded
(`lambda_fn.wire`), so no producer's bytes and no model's value can make a record unparseable or too
large for its service, or raise while it is encoded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from lambda_fn.records import Reason, UserRecord
from lambda_fn.scoring import RowError, describe
from lambda_fn.sinks import SQS_MAX_BYTES, Entry
from lambda_fn.wire import (
    bounded_json,
    bounded_text,
    encode_json,
    encode_json_bytes,
    finite_or_none,
    fit_text,
    partition_key,
    utf8,
)

_quote = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
# A dead letter is at most this long (ASCII), whatever it carries: SQS' limit less room for its attribute.
DLQ_BODY_MAX = SQS_MAX_BYTES - 1024
_META_BYTES = 512  # ARN, shard id, sequence number as written (Lambda's own, bounded anyway)
SHADOW_DETAIL_CHARS = 300


# --------------------------------------------------------------------------- predictions


def identity_json(identity: Mapping[str, str] | None) -> str:
    """A model identity as strict JSON with bounded values (they come from settings and MLmodel metadata)."""
    if identity is None:
        return "null"
    return encode_json({k: bounded_text(str(v), _META_BYTES) for k, v in identity.items()})


def prediction_entry(i: int, rec: UserRecord, prediction: Any, model_json: str, route_key: str) -> Entry | str:
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
    return Entry(ref=i, data=data.encode(), key=partition_key(route_key, seq))


# --------------------------------------------------------------------------- dead letters


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
    head = encode_json_bytes(body)
    literal = _quote(data) if encoding == "text" else f'"{data}"'  # base64 needs no escaping
    if len(head) + len(literal) - 2 > DLQ_BODY_MAX:
        body["data_truncated"] = True
        body["data_size"] = len(raw)
        body["data_sha256"] = hashlib.sha256(raw).hexdigest()
        room = DLQ_BODY_MAX - len(encode_json_bytes(body))
        body["data"] = fit_text(data, room)[0] if encoding == "text" else data[: max(0, room) // 4 * 4]
    else:
        body["data"] = data
    return encode_json_bytes(body)


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
    return encode_json_bytes(body)


# --------------------------------------------------------------------------- shadow records


def strict_value(prediction: Any) -> tuple[Any, str | None]:
    """A prediction as strict JSON can carry it, or None and why not (NaN, a value no encoder takes)."""
    try:
        encode_json_bytes(prediction)
    except ValueError as exc:
        if "not JSON compliant" in str(exc):
            return None, Reason.NON_FINITE_PREDICTION
        return None, Reason.MODEL_ERROR
    except (TypeError, RecursionError):
        return None, Reason.MODEL_ERROR
    return prediction, None


def shadow_entry(
    ref: int,
    *,
    model: Mapping[str, str],
    prediction: Any,
    error: RowError | None,
    primary_model: Mapping[str, str],
    primary_prediction: Any,
    primary_ok: bool,
    rid: Any,
    key: str | None,
    source: Mapping[str, Any] | None,
) -> Entry:
    """One shadow record (no top-level `prediction`: a consumer reading it as primary output fails loudly)."""
    shadow: dict[str, Any] = {"model": {k: bounded_text(str(v), 512) for k, v in model.items()}}
    if error is None:
        value, why = strict_value(prediction)
        error = None if why is None else RowError(why, "the shadow's prediction cannot be written as strict JSON")
        if error is None:
            shadow["prediction"] = value
    if error is not None:
        shadow["error"] = {"reason": error.reason, "detail": bounded_text(error.detail, SHADOW_DETAIL_CHARS)}
    primary: dict[str, Any] = {"model": primary_model}
    value, why = strict_value(primary_prediction) if primary_ok else (None, "not scored")
    if why is None:
        primary["prediction"] = value
    else:
        primary["error"] = "the primary did not score this record"
    rid_json, rid_digest = bounded_json(rid)
    body: dict[str, Any] = {"kind": "shadow", "id": json.loads(rid_json), "shadow": shadow, "primary": primary}
    if rid_digest is not None:
        body["id_sha256"] = rid_digest
    if source is not None:
        where = dict(source)
        where["partition_key"] = bounded_text(str(where.get("partition_key", "")))
        body["source"] = where
    key = key or hashlib.sha256(utf8(rid_json)).hexdigest()
    return Entry(ref=ref, data=encode_json_bytes(body), key=partition_key(key))
