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
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson

from lambda_fn.records import Reason, UserRecord
from lambda_fn.scoring import RowError, describe
from lambda_fn.sinks import SQS_MAX_BYTES, Entry
from lambda_fn.wire import (
    ID_MAX_BYTES,
    MAX_PARTITION_KEY_CHARS,
    TEXT_MAX_BYTES,
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


_new_entry = partial(tuple.__new__, Entry)  # Entry._make without its Python frame: one C call per record
_PREDICTION = (
    '{"id":%s,"prediction":%s,"model":%s,"source":{"shard_id":%s,"sequence_number":%s,'
    '"sub_sequence_number":null,"partition_key":%s}}'
)


def prediction_entries(
    refs: Sequence[int],
    recs: Sequence[UserRecord],
    predictions: Sequence[Any],
    models: str | Sequence[str],
    keys: Sequence[str] | None,
) -> list[Entry] | None:
    """The entries `prediction_entry` builds for these records, built a column at a time; None when the batch is
    not the common case, and then the caller builds them one by one.

    The common case: every prediction a finite float, every id a string, ids, partition keys, sequence numbers
    and routing keys ASCII, no KPL sub-records, ids and partition keys within their bounds, routing keys
    1-256 characters. Then each field's literal is what the record-by-record path writes (`_quote` of the text,
    `repr` of the float, the key unchanged) and each record one `%` of one template: the same bytes, in C-level
    passes over the columns. `models` is the model JSON of every record, or of each; `keys` the routing keys
    (None: each record's id, which `stream._route_key` is for an id that is a non-empty string; an empty one
    is left to the record-by-record path by the length check).
    """
    columns = _common_columns(recs, predictions, keys)
    if columns is None:
        return None
    rid_lits, pk_lits, seqs, route = columns
    shards = {r.shard_id for r in recs}
    seq_lits = map(_quote, seqs)  # ASCII: the digits quoted, as prediction_entry writes them
    if isinstance(models, str) and len(shards) == 1:  # one model and one shard: both are part of the template
        template = _PREDICTION % ("%s", "%s", _literal(models), _literal(_quote(shards.pop())), "%s", "%s")
        rows: Any = zip(rid_lits, float_texts(predictions), seq_lits, pk_lits, strict=True)
    else:
        template = _PREDICTION
        shard_lits = {shard: _quote(shard) for shard in shards}
        each = [models] * len(recs) if isinstance(models, str) else models
        shard_col = [shard_lits[r.shard_id] for r in recs]
        rows = zip(rid_lits, float_texts(predictions), each, shard_col, seq_lits, pk_lits, strict=True)
    datas = list(map(str.encode, map(template.__mod__, rows)))
    return list(map(_new_entry, zip(refs, datas, route, strict=True)))


def _common_columns(
    recs: Sequence[UserRecord], predictions: Sequence[Any], keys: Sequence[str] | None
) -> tuple[list[str], list[str], list[str], Sequence[str]] | None:
    """(id literals, partition key literals, sequence numbers, routing keys) when the batch is the common case,
    each condition checked over a whole column (C-level passes), else None."""
    if not recs or {type(p) for p in predictions} != {float} or not math.isfinite(sum(predictions)):
        return None  # a sum is finite only if every term is
    rids = [r.record_id for r in recs]
    if {type(r) for r in rids} != {str} or {r.sub_sequence_number for r in recs} != {None}:
        return None
    route = rids if keys is None else keys
    pks = [r.partition_key for r in recs]
    seqs = [r.sequence_number for r in recs]
    if not all("".join(column).isascii() for column in (rids, pks, seqs, route)):
        return None  # ASCII: nothing to clean (lone surrogates) and each character one byte of its key
    if min(map(len, route)) == 0 or max(map(len, route)) > MAX_PARTITION_KEY_CHARS:
        return None
    rid_lits = list(map(_quote, rids))
    pk_lits = list(map(_quote, pks))
    if max(map(len, rid_lits)) > ID_MAX_BYTES or max(map(len, pk_lits)) > TEXT_MAX_BYTES:
        return None
    return rid_lits, pk_lits, seqs, route


def _literal(text: str) -> str:
    """`text` as a fixed part of a `%` template."""
    return text.replace("%", "%%")


def float_texts(values: Sequence[float]) -> list[str]:
    """`repr` of each of these finite floats: by one orjson call where it writes what repr does (0, or
    1e-4 <= |x| < 1e16: the shortest round-trip digits, positionally; outside it the exponents differ, 1e16
    against 1e+16), else by repr."""
    import numpy as np

    mag = np.abs(np.asarray(values, dtype=np.float64))
    if bool(np.all((mag == 0) | ((mag >= 1e-4) & (mag < 1e16)))):
        return orjson.dumps(values)[1:-1].decode().split(",")
    return list(map(repr, values))


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
