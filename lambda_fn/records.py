"""Kinesis event records to feature payloads: base64, KPL de-aggregation, JSON, payload mapping.

Every user record comes out exactly once, either with its features or with the reason it can never
be scored. Aggregated (KPL) records are framed and checksummed here so a corrupt aggregate becomes one
dead-letter entry with a reason instead of being dropped; the protobuf itself is parsed with the
message class of `aws-kinesis-agg` (imported only when an aggregate is seen).
"""

from __future__ import annotations

import binascii
import hashlib
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from itertools import repeat
from typing import Any

import orjson

KPL_MAGIC = b"\xf3\x89\x9a\xc2"
_DIGEST = 16
_a2b = binascii.a2b_base64
_strict_a2b = partial(binascii.a2b_base64, strict_mode=True)
# JSON nested deeper than this is refused at decode (RFC 8259 section 9 lets a parser limit depth; serde_json
# uses 128): every later step that walks a value (the decoder itself, repr, copies, encoders) then stays far
# from Python's recursion limit, so a deep record is one dead letter, never a RecursionError.
MAX_JSON_DEPTH = 128
# A run of this many digits may be an integer beyond 64 bits: orjson would read it as a float (json: an int).
_LONG_DIGIT_RUN = b"0" * 19
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_UNREAD = object()


class Reason:
    """Dead-letter reason codes (stable strings; consumers filter on them)."""

    NOT_BASE64 = "not_base64"
    KPL_CORRUPT = "kpl_corrupt"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    MISSING_FEATURES = "missing_features_field"
    HOOK_ERROR = "hook_error"
    SCHEMA = "schema_violation"
    MODEL_ERROR = "model_error"
    NON_FINITE_PREDICTION = "non_finite_prediction"
    OUTPUT_TOO_LARGE = "output_too_large"


@dataclass(slots=True)
class UserRecord:
    """One user record of a Kinesis event, with where it came from and what it decoded to."""

    event_source_arn: str
    shard_id: str
    sequence_number: str
    sub_sequence_number: int | None
    partition_key: str
    arrival: float | None
    raw: str
    data: bytes | None = None
    features: Any = None
    record_id: Any = None
    reason: str | None = None
    detail: str | None = None

    def fail(self, reason: str, detail: str) -> None:
        self.reason, self.detail = reason, detail

    @property
    def position(self) -> str:
        sub = "" if self.sub_sequence_number is None else f"/{self.sub_sequence_number}"
        return f"{self.shard_id}:{self.sequence_number}{sub}"


def aggregated_record_class() -> Any:
    """The KPL `AggregatedRecord` message class of aws-kinesis-agg, importable from a fresh interpreter.

    Its generated `messages_pb2` does `import config_pb2`, a top-level name that resolves only after the
    library's aggregator or deaggregator module has put its own folder on `sys.path`. In Lambda nothing
    else imports those, so bind that name to the package's module instead of editing `sys.path`.
    """
    if "config_pb2" not in sys.modules:
        from aws_kinesis_agg import config_pb2

        sys.modules["config_pb2"] = config_pb2
    from aws_kinesis_agg import messages_pb2

    return messages_pb2.AggregatedRecord  # type: ignore[attr-defined]


def _text(value: str | bytes) -> str:
    """A protobuf string field: proto2 hands invalid UTF-8 over as bytes."""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _deaggregate(data: bytes) -> list[tuple[str | None, bytes]] | str:
    """User records of a KPL aggregate as (partition key, data), or the reason it is corrupt.

    Any failure to read it (digest, protobuf, fields) is that reason: the aggregate is one dead letter.
    An aggregate without user records is corrupt too (the KPL never writes one): consumed silently it
    would be a record that became nothing.
    """
    body, digest = data[len(KPL_MAGIC) : -_DIGEST], data[-_DIGEST:]
    if hashlib.md5(body, usedforsecurity=False).digest() != digest:
        return "KPL aggregate MD5 digest does not match its contents"
    agg = aggregated_record_class()()
    try:
        agg.ParseFromString(body)
        keys = [_text(k) for k in agg.partition_key_table]
        out: list[tuple[str | None, bytes]] = []
        for rec in agg.records:
            idx = rec.partition_key_index
            out.append((keys[idx] if idx < len(keys) else None, bytes(rec.data)))
    except Exception as exc:  # noqa: BLE001 - whatever the parser raises, this aggregate cannot be read
        return f"KPL aggregate is not a valid protobuf: {type(exc).__name__}: {exc}"[:500]
    if not out:
        return "KPL aggregate holds no user records"
    return out


def decode_event(event: Mapping[str, Any]) -> list[UserRecord]:
    """Flatten a Kinesis event into user records with raw data decoded (no JSON yet).

    The common batch (every record valid base64, no KPL aggregate) is decoded a column at a time: the fields
    read by comprehensions, the data by one `map` of the strict base64 decoder, the records made by one `map`.
    Any other batch goes record by record (`_decode_each`), with the same result.
    """
    records = list(event.get("Records") or ())
    kins = [record.get("kinesis") or {} for record in records]
    raws = [kin.get("data", "") for kin in kins]
    try:
        datas = list(map(_strict_a2b, raws))
    except (binascii.Error, ValueError, TypeError):  # a record is not base64: it fails alone, below
        return _decode_each(records)
    if KPL_MAGIC in {data[:4] for data in datas}:  # an aggregate (or what starts like one)
        return _decode_each(records)
    return list(
        map(
            UserRecord,
            [str(record.get("eventSourceARN", "")) for record in records],
            [str(record.get("eventID", "")).partition(":")[0] for record in records],  # the shard id
            [str(kin.get("sequenceNumber", "")) for kin in kins],
            repeat(None),
            [str(kin.get("partitionKey", "")) for kin in kins],
            [kin.get("approximateArrivalTimestamp") for kin in kins],
            raws,
            datas,
        )
    )


def _decode_each(records: Iterable[Mapping[str, Any]]) -> list[UserRecord]:
    """`decode_event` record by record: a record that is not base64 is marked, a KPL aggregate unpacked."""
    out: list[UserRecord] = []
    append = out.append
    for record in records:
        kin = record.get("kinesis") or {}
        raw = kin.get("data", "")
        base = UserRecord(
            str(record.get("eventSourceARN", "")),
            str(record.get("eventID", "")).partition(":")[0],  # the shard id: what precedes the first ':'
            str(kin.get("sequenceNumber", "")),
            None,
            str(kin.get("partitionKey", "")),
            kin.get("approximateArrivalTimestamp"),
            raw,
        )
        try:
            data = _a2b(raw, strict_mode=True)
        except (binascii.Error, ValueError, TypeError) as exc:
            base.fail(Reason.NOT_BASE64, f"record data is not valid base64: {exc}")
            append(base)
            continue
        base.data = data
        if data[:4] == KPL_MAGIC and len(data) >= len(KPL_MAGIC) + _DIGEST:
            out.extend(_user_records(base, data, raw))
        else:
            append(base)
    return out


def _user_records(base: UserRecord, data: bytes, raw: str) -> list[UserRecord]:
    """The user records of one KPL aggregate, or the aggregate itself as one record marked corrupt."""
    users = _deaggregate(data)
    if isinstance(users, str):
        base.fail(Reason.KPL_CORRUPT, users)
        return [base]
    return [
        UserRecord(
            event_source_arn=base.event_source_arn,
            shard_id=base.shard_id,
            sequence_number=base.sequence_number,
            sub_sequence_number=sub,
            partition_key=pkey or base.partition_key,
            arrival=base.arrival,
            raw=raw,
            data=payload,
        )
        for sub, (pkey, payload) in enumerate(users)
    ]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


# Strict JSON in as out: NaN / Infinity / -Infinity are refused (Python's json accepts them by default).
_DECODER = json.JSONDecoder(parse_constant=_no_constant)
_raw_decode = _DECODER.raw_decode


def strict_loads(data: bytes) -> Any:
    """json.loads semantics, faster: the scanner directly, falling back to json.loads for the unusual
    cases (leading/trailing whitespace, BOM, UTF-16/32) so errors and results stay identical."""
    text = data.decode("utf-8")
    try:
        value, end = _raw_decode(text)
    except ValueError:
        return json.loads(data, parse_constant=_no_constant)
    if end != len(text):
        return json.loads(data, parse_constant=_no_constant)
    return value


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of a decoded JSON value, counted without recursion and up to `limit` + 1."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if type(node) is dict:
            children: Any = node.values()
        elif type(node) is list:
            children = node
        else:
            continue
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return deepest
        stack.extend((child, depth + 1) for child in children if type(child) in (dict, list))
    return deepest


def decode_json(data: bytes) -> Any:
    """Strict JSON of at most MAX_JSON_DEPTH levels; ValueError (with the reason) otherwise.

    The depth is measured only when the record has more brackets than the limit (an upper bound of
    its depth), so ordinary payloads pay two `bytes.count` calls.
    """
    try:
        value = strict_loads(data)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    if data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH and json_depth(value) > MAX_JSON_DEPTH:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def record_id(payload: dict[str, Any], features: Any, id_field: str) -> Any:
    """A record's id: at the top level, else inside its features object (stream, API and batch alike)."""
    rid = payload.get(id_field)
    if rid is None and type(features) is dict:
        rid = features.get(id_field)
    return rid


def _fast_loads(datas: list[bytes]) -> Callable[[bytes], Any]:
    """The decoder for a batch's payloads: orjson (about 3x the scanner's speed) where it reads what `strict_loads`
    reads, else `strict_loads`.

    orjson refuses what strict_loads refuses, or more (a lone surrogate, a BOM, UTF-16, a number beyond a
    double): each record it refuses is decoded again by `decode_json`, so its error is the usual one. It
    accepts nothing that strict_loads refuses and reads every accepted value alike, except an integer beyond
    64 bits, which it reads as a float: a batch holding a run of 19 or more digits anywhere (one C-level scan of
    all payloads) is decoded by the scanner, record by record.
    """
    if _LONG_DIGIT_RUN in b" ".join(datas).translate(_DIGITS_TO_ZERO):
        return strict_loads
    return orjson.loads


def map_payloads(records: Iterable[UserRecord], features_field: str | None, id_field: str | None) -> None:
    """Decode JSON and pick features and id, in place; failures are marked with a reason."""
    live = [rec for rec in records if rec.reason is None]
    datas = [rec.data or b"" for rec in live]
    loads = _fast_loads(datas)
    for rec, data in zip(live, datas, strict=True):
        try:
            payload = loads(data)
        except (ValueError, RecursionError):  # orjson.JSONDecodeError is a ValueError; all decoded again below
            payload = _UNREAD
        if payload is _UNREAD or ((data.count(b"[") + data.count(b"{")) > MAX_JSON_DEPTH):
            try:
                payload = decode_json(data)
            except ValueError as exc:  # UnicodeDecodeError included
                rec.fail(Reason.NOT_JSON, f"record data is not JSON: {exc}")
                continue
        if type(payload) is not dict:
            rec.fail(Reason.NOT_OBJECT, f"record JSON must be an object, got {type(payload).__name__}")
            continue
        if features_field:
            if features_field not in payload:
                if id_field:  # the dead letter still says which record it was
                    rec.record_id = record_id(payload, None, id_field)
                rec.fail(Reason.MISSING_FEATURES, f"record has no '{features_field}' field (FEATURES_FIELD)")
                continue
            features = rec.features = payload[features_field]
        else:
            features = rec.features = payload
        if id_field:
            rid = payload.get(id_field)
            rec.record_id = features.get(id_field) if rid is None and type(features) is dict else rid
