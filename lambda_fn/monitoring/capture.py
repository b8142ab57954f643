"""The capture record and its S3 layout: gzip JSON lines, Hive-style partitions, bounded objects. No S3 calls here.

One record per captured prediction, modelled on SageMaker's data capture (`captureData`, `eventMetadata`,
`eventVersion`), plus what a Lambda scorer knows and SageMaker's capture does not (model identity, variant,
source position):

    {"captureData": {
        "endpointInput":  {"observedContentType": "application/json", "mode": "INPUT",  "encoding": "JSON",
                           "data": {"PU_DO": "132_48", "trip_distance": 17.2, ...}},
        "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT", "encoding": "JSON",
                           "data": 41.7}},
     "eventMetadata": {"eventId": "<uuid or source position>", "inferenceId": "<record id, or its keyed hash>",
                       "inferenceTime": "2026-12-01T11:05:09.123Z"},
     "eventVersion": "0",
     "model": {"name": "taxi-ride-duration", "version": "3", "sha256": "350a..."},
     "variant": "primary",
     "source": {"shard_id": "...", "sequence_number": "...", "sub_sequence_number": null}}

Unlike SageMaker, `data` holds the JSON value itself rather than a string of it, so Athena, Spark and the
monitor read fields without a second parse. Values are strict JSON: NaN and infinities become null, lone
surrogates U+FFFD, numpy scalars plain numbers, and anything else its `str`.

Key layout (the emitter passes `<prefix>/capture` as the prefix):
`<prefix>/capture/model=<name>/sha256=<sha>/variant=<v>/date=YYYY-MM-DD/hour=HH/<uuid>.jsonl.gz`
(partition values percent-encoded as Hive does, so a name with `/` or `=` stays one partition). Gzip JSON lines
rather than Parquet: the image needs no pyarrow, each batch appends a small object cheaply, and Athena, Spark
and `zcat` read it; the monitor compacts history into columnar files if that ever matters.
"""

from __future__ import annotations

import gzip
import json
import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from itertools import chain, repeat
from typing import Any, cast
from urllib.parse import quote

import numpy as np
import orjson

MAX_OBJECT_BYTES = 8 * 1024 * 1024  # uncompressed JSON-lines bytes per object
MAX_OBJECT_ROWS = 10_000
MAX_RECORD_BYTES = 256 * 1024  # a record over this is not captured (counted as dropped)
EVENT_VERSION = "0"


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    version: str
    sha256: str


@dataclass(frozen=True)
class CaptureRecord:
    inference_id: str  # the record id (ID_FIELD), or its keyed hash
    event_id: str
    features: Mapping[str, Any]  # signature fields after the feature hook
    prediction: Any
    model: ModelIdentity
    variant: str
    time: datetime  # when it was scored (UTC)
    source: Mapping[str, Any] | None = None  # stream position: shard, sequence numbers; None for the API
    raw: Mapping[str, Any] | None = None  # optional raw payload fields, off by default

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "captureData": {
                "endpointInput": _part("INPUT", self.features),
                "endpointOutput": _part("OUTPUT", self.prediction),
            },
            "eventMetadata": {
                "eventId": self.event_id,
                "inferenceId": self.inference_id,
                "inferenceTime": iso_time(self.time),
            },
            "eventVersion": EVENT_VERSION,
            "model": {"name": self.model.name, "version": self.model.version, "sha256": self.model.sha256},
            "variant": self.variant,
            "source": dict(self.source) if self.source is not None else None,
        }
        if self.raw is not None:
            d["captureData"]["rawInput"] = _part("INPUT", self.raw)
        return d


def _part(mode: str, data: Any) -> dict[str, Any]:
    return {"observedContentType": "application/json", "mode": mode, "encoding": "JSON", "data": data}


@lru_cache(maxsize=256)  # a batch's records share one time: format it once
def iso_time(t: datetime) -> str:
    t = t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def strict(value: Any) -> Any:
    """`value` as strict JSON data (see the module's note)."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, np.generic):
        return strict(value.item())
    if isinstance(value, Mapping):
        return {_clean(str(k)): strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [strict(v) for v in value]
    if isinstance(value, datetime):
        return iso_time(value)
    return _clean(str(value))


def _clean(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def encode_line(record: CaptureRecord | Mapping[str, Any]) -> bytes:
    d = record.to_dict() if isinstance(record, CaptureRecord) else record
    try:  # plain JSON data (the usual record) encodes as is: the same bytes `strict` would give, without its walk
        return json.dumps(d, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8") + b"\n"
    except (TypeError, ValueError, UnicodeEncodeError):  # numpy integers, NaN, lone surrogates, other types
        pass
    text = json.dumps(strict(d), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8") + b"\n"


@dataclass(frozen=True, slots=True)
class EncodedLines:
    """The capture records of one model, variant and time already encoded as JSON lines (`record_lines`): their
    bytes end to end, each line ending in a newline (JSON escapes every newline inside a value, so a newline byte
    only ever ends a line), and how many."""

    model: ModelIdentity
    variant: str
    time: datetime
    body: bytes
    rows: int

    @classmethod
    def of(cls, model: ModelIdentity, variant: str, time: datetime, lines: Sequence[bytes]) -> EncodedLines:
        return cls(model, variant, time, b"".join(lines), len(lines))

    @property
    def lines(self) -> list[bytes]:
        """Each record's line, its newline included."""
        return [line + b"\n" for line in self.body.split(b"\n")[:-1]]

    def longest(self) -> int:
        """The longest line's length in bytes (one numpy pass over the body, none when it is one line or empty)."""
        if self.rows <= 1:
            return len(self.body)
        ends = np.flatnonzero(np.frombuffer(self.body, dtype=np.uint8) == 10)
        return int(np.diff(ends, prepend=-1).max())


_quote = json.encoder.encode_basestring  # type: ignore[attr-defined]  # what json.dumps(ensure_ascii=False) uses
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_PLAIN = (str, int, bool, type(None))
_PLAINS = set(_PLAIN)


def _plain_json(value: Any) -> str:
    """`_ENCODE(value)` in one C call (orjson) for a flat mapping of strings, ints, booleans and nulls (a record's
    source): the same text (orjson escapes what `json` escapes, ints as digits); anything else goes to `_ENCODE`
    (orjson writes some floats differently, e.g. 1e16 for 1e+16)."""
    if type(value) is dict and all(type(v) in _PLAIN for v in value.values()):
        try:
            return orjson.dumps(value).decode()
        except TypeError:  # orjson.JSONEncodeError: an int over 64 bits, a lone surrogate, a non-str key
            pass
    return str(_ENCODE(value))


_INPUT = '{"observedContentType":"application/json","mode":"INPUT","encoding":"JSON","data":'
_OUTPUT = '{"observedContentType":"application/json","mode":"OUTPUT","encoding":"JSON","data":'


def _scalar(v: Any) -> str:
    """A plain JSON scalar as `json.dumps` writes it; TypeError / ValueError for anything else (the slow path)."""
    t = type(v)
    if t is str:
        return str(_quote(v))
    if t is float or (isinstance(v, float) and not isinstance(v, bool)):
        if not math.isfinite(v):
            raise ValueError("not finite")
        return float.__repr__(v)
    if t is int:
        return int.__repr__(v)
    if v is None:
        return "null"
    if t is bool:
        return "true" if v else "false"
    raise TypeError(t.__name__)


_BOOL = {True: "true", False: "false"}


def _orjson_writes_as_repr(values: Sequence[float]) -> bool:
    """Whether orjson writes every float as `repr` does: finite, and 0 or 1e-4 <= |x| < 1e16, where both write the
    shortest round-trip digits positionally (outside it their exponents differ: 1e+16 / 1e16); a test checks."""
    mag = np.abs(np.array(values, dtype=np.float64))
    return bool(np.all((mag == 0) | ((mag >= 1e-4) & (mag < 1e16))))


def _fragments(values: Sequence[Any], encode: Callable[[Any], str] = _scalar) -> Sequence[str | None]:
    """Each value as `json.dumps` writes it, None where `encode` refuses it (that record takes the slow path).

    A column of only floats (by orjson where it writes what `repr` does), only strings, only ints (orjson), only
    ints and floats, only booleans or only nulls is written in one C-level pass (no Python step per value); a mixed
    column value by value."""
    types = set(map(type, values))
    try:
        if types == {float} and encode is _scalar and _orjson_writes_as_repr(values):
            return orjson.dumps(values)[1:-1].decode().split(",")  # one C call: the same text as repr, here
        if types <= {str} and encode is _scalar:
            return list(map(_quote, values))
        if types == {int} and encode is _scalar and len(values) > 1:  # one C call: orjson writes ints as repr
            return orjson.dumps(values)[1:-1].decode().split(",")
        if types <= {int, float} and encode is _scalar:
            texts: list[str | None] = list(map(repr, values))  # int and float repr: what json.dumps writes
            if float in types and not all(map(math.isfinite, values)):
                return [t if math.isfinite(v) else None for t, v in zip(texts, values, strict=True)]
            return texts
        if types <= {bool} and encode is _scalar:
            return list(map(_BOOL.__getitem__, values))
        if types == {type(None)} and encode is _scalar:  # a stream's sub-sequence numbers without KPL
            return ["null"] * len(values)
    except (ValueError, TypeError):  # an int too long for repr, or for orjson (over 64 bits)
        pass
    out: list[str | None] = []
    for v in values:
        try:
            out.append(encode(v))
        except (TypeError, ValueError, UnicodeEncodeError):
            out.append(None)
    return out


def _source_fragments(sources: Sequence[Mapping[str, Any] | None]) -> Sequence[str | None]:
    """`_fragments(sources, _plain_json)` in three C-level passes when every source is a flat dict of strings, ints,
    booleans and nulls (a stream's or a request's position): one type check over all their values, then orjson."""
    dicts = cast("Sequence[dict[str, Any]]", sources)  # checked on the next line
    if set(map(type, sources)) <= {dict} and set(map(type, chain.from_iterable(map(dict.values, dicts)))) <= _PLAINS:
        try:
            return list(map(bytes.decode, map(orjson.dumps, sources)))
        except TypeError:  # orjson.JSONEncodeError: an int over 64 bits, a lone surrogate, a non-str key
            pass
    return _fragments(sources, _plain_json)


_SLOT = "\0"  # a value's place in `_pieces`' text: no JSON text it holds can contain a raw NUL (JSON escapes it)


def _pieces(
    names: Sequence[str], raw: bool, source_fields: Sequence[str] | None, model: ModelIdentity, variant: str,
    time: datetime,
) -> list[str]:  # fmt: skip
    """One record's line as the constant texts around its values: a value per feature, the prediction, [raw,] the
    event id, the inference id and the source (one value, or one per field of `source_fields`), in that order."""
    model_json = _ENCODE({"name": model.name, "version": model.version, "sha256": model.sha256})
    feats = ",".join(f"{_quote(n)}:{_SLOT}" for n in names)
    raw_part = f',"rawInput":{_INPUT}{_SLOT}}}' if raw else ""
    source = _SLOT if source_fields is None else "{" + ",".join(f"{_quote(k)}:{_SLOT}" for k in source_fields) + "}"
    text = (
        f'{{"captureData":{{"endpointInput":{_INPUT}{{{feats}}}}},"endpointOutput":{_OUTPUT}{_SLOT}}}{raw_part}}},'
        f'"eventMetadata":{{"eventId":{_SLOT},"inferenceId":{_SLOT},"inferenceTime":{_quote(iso_time(time))}}},'
        f'"eventVersion":"{EVENT_VERSION}","model":{model_json},"variant":{_quote(variant)},"source":{source}}}\n'
    )
    return text.split(_SLOT)


def _joined(pieces: Sequence[str], parts: Sequence[Sequence[str | None]]) -> str:
    """Every line end to end in one C-level join: piece, value, piece, ..., row after row (no Python step a row);
    a column of one value (a batch's shard, its null sub-sequence numbers) is written into the pieces around it."""
    folded = [pieces[0]]
    varying = []
    for part, piece in zip(parts, pieces[1:], strict=True):
        if part and part[0] == part[-1] and part[0] is not None and part.count(part[0]) == len(part):
            folded[-1] += str(part[0]) + piece
        else:
            varying.append(part)
            folded.append(piece)
    if not varying:  # one row, or rows alike: one line, repeated (zip would never end on repeats alone)
        return folded[0] * len(parts[0]) if parts else ""
    pieces, parts = folded, varying
    columns: list[Iterable[Any]] = []
    for piece, part in zip(pieces, parts, strict=False):
        columns += [repeat(piece), part]
    columns.append(repeat(pieces[-1]))
    return "".join(chain.from_iterable(zip(*columns, strict=False)))  # ends with the last row: its values end


def record_lines(
    columns: Mapping[str, Sequence[Any]],
    predictions: Sequence[Any],
    inference_ids: Sequence[str],
    event_ids: Sequence[str],
    sources: Sequence[Mapping[str, Any] | None] | Mapping[str, Sequence[Any]],
    raws: Sequence[Mapping[str, Any]] | None,
    model: ModelIdentity,
    variant: str,
    time: datetime,
) -> EncodedLines:
    """The JSON lines of many `CaptureRecord`s of one model, variant and time, built column by column (each
    column's values written in one pass, then every line in one join): the same bytes as `encode_line` (a test
    checks), which a record holding anything but plain finite scalars goes through.

    `sources` is each record's source (a mapping or None), or the sources as columns (field → a value per record:
    every record's source is then the object of those fields, in that order, as a stream's are)."""
    names = [str(n) for n in columns]
    parts = [_fragments(col) for col in columns.values()]
    parts.append(_fragments(predictions))
    if raws is not None:
        parts.append(_fragments(raws, lambda v: str(_ENCODE(v))))
    parts += [_fragments(event_ids), _fragments(inference_ids)]
    by_field = isinstance(sources, Mapping) and all(type(k) is str for k in sources)
    if by_field:
        parts += [_fragments(col) for col in cast("Mapping[str, Sequence[Any]]", sources).values()]
    else:
        sources = _source_rows(sources, len(predictions))
        parts.append(_source_fragments(sources))
    fields = list(cast("Mapping[str, Sequence[Any]]", sources)) if by_field else None
    pieces = _pieces(names, raws is not None, fields, model, variant, time)
    n = len(predictions)
    if any(len(p) != n for p in parts):
        raise ValueError("every column of the captured records must have one value per prediction")
    slow = {i for p in parts for i, t in enumerate(p) if t is None} if any(None in p for p in parts) else set()
    if not slow:
        try:
            return EncodedLines(model, variant, time, _joined(pieces, parts).encode("utf-8"), n)
        except UnicodeEncodeError:  # a lone surrogate: those records take the slow path
            pass
    template = "%s".join(p.replace("%", "%%") for p in pieces)
    rows = _source_rows(sources, n)
    lines = []
    for i, row in enumerate(zip(*parts, strict=True)):
        if i not in slow:
            try:
                lines.append((template % row).encode("utf-8"))
                continue
            except UnicodeEncodeError:
                pass
        record = CaptureRecord(inference_ids[i], event_ids[i], {c: v[i] for c, v in columns.items()},
                               predictions[i], model, variant, time, rows[i],
                               None if raws is None else raws[i])  # fmt: skip
        lines.append(encode_line(record))
    return EncodedLines.of(model, variant, time, lines)


def _source_rows(
    sources: Sequence[Mapping[str, Any] | None] | Mapping[str, Sequence[Any]], n: int
) -> Sequence[Mapping[str, Any] | None]:
    """Each record's source as a mapping (or None), from either form `record_lines` takes."""
    if not isinstance(sources, Mapping):
        return sources
    fields = list(sources.items())
    return [{k: v[i] for k, v in fields} for i in range(n)]


def partition(value: str) -> str:
    """A Hive partition value: percent-encoded like Hive's escaping (`/`, `=`, `%`, spaces, controls, ...)."""
    return quote(value, safe="-_.~") or "__HIVE_DEFAULT_PARTITION__"


def object_key(prefix: str, model: ModelIdentity, variant: str, when: datetime, name: str) -> str:
    t = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    parts = [
        f"model={partition(model.name)}",
        f"sha256={partition(model.sha256)}",
        f"variant={partition(variant)}",
        f"date={t:%Y-%m-%d}",
        f"hour={t:%H}",
        f"{name}.jsonl.gz",
    ]
    return "/".join([prefix.strip("/"), *parts] if prefix.strip("/") else parts)


@dataclass(frozen=True)
class CaptureObjects:
    objects: list[tuple[str, bytes]]  # (key, gzip body)
    rows: int
    dropped: int  # records over MAX_RECORD_BYTES, not captured


def encode_objects(
    records: Iterable[CaptureRecord | EncodedLines],
    prefix: str,
    *,
    max_bytes: int = MAX_OBJECT_BYTES,
    max_rows: int = MAX_OBJECT_ROWS,
    max_record_bytes: int = MAX_RECORD_BYTES,
    new_name: Callable[[], str] = lambda: str(uuid.uuid4()),
    key_model: ModelIdentity | None = None,
) -> CaptureObjects:
    """The S3 objects of one batch's captured records: one or more per (model, variant, hour), each bounded.

    `key_model` names the `model=` / `sha256=` partitions instead of each record's own model (the scorer files a
    shadow's or an A/B arm's records under the deployment's model, beside the primary's). Each body is gzip
    (mtime 0, so equal records give equal bytes) of at most `max_rows` lines and `max_bytes` uncompressed bytes.
    """
    groups: dict[tuple[ModelIdentity, str, str], list[EncodedLines]] = {}
    first: dict[tuple[ModelIdentity, str, str], datetime] = {}
    dropped = 0
    rows = 0
    hours: dict[datetime, tuple[datetime, str]] = {}  # a batch's records share one time: its hour computed once
    limit = min(max_record_bytes, max_bytes)
    for r in records:
        encoded = r if isinstance(r, EncodedLines) else EncodedLines.of(r.model, r.variant, r.time, [encode_line(r)])
        kept = encoded
        if len(encoded.body) > limit and encoded.longest() > limit:  # a line over the limit: only it is dropped
            kept = EncodedLines.of(r.model, r.variant, r.time, [x for x in encoded.lines if len(x) <= limit])
        dropped += encoded.rows - kept.rows
        if not kept.rows:
            continue
        if r.time not in hours:
            t = r.time.astimezone(UTC) if r.time.tzinfo else r.time.replace(tzinfo=UTC)
            hours[r.time] = (t, f"{t:%Y-%m-%d %H}")
        t, hour = hours[r.time]
        g = (r.model, r.variant, hour)
        groups.setdefault(g, []).append(kept)
        first.setdefault(g, t)
        rows += kept.rows
    objects: list[tuple[str, bytes]] = []
    for g, parts in groups.items():
        model, variant, _ = g
        model = key_model or model
        body = b"".join(p.body for p in parts)
        if sum(p.rows for p in parts) <= max_rows and len(body) <= max_bytes:  # the usual batch: one object
            objects.append((object_key(prefix, model, variant, first[g], new_name()), _gzip(body)))
            continue
        chunk: list[bytes] = []
        size = 0
        for line in chain.from_iterable(p.lines for p in parts):
            if chunk and (len(chunk) >= max_rows or size + len(line) > max_bytes):
                objects.append((object_key(prefix, model, variant, first[g], new_name()), _gzip(b"".join(chunk))))
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        if chunk:
            objects.append((object_key(prefix, model, variant, first[g], new_name()), _gzip(b"".join(chunk))))
    return CaptureObjects(objects, rows, dropped)


GZIP_LEVEL = 3  # zlib's fast strategy: half the CPU of level 5 (1.7 vs 3.3 ms for 1,000 lines), objects ~18 % larger


def _gzip(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)


def read_lines(body: bytes) -> list[dict[str, Any]]:
    """The records of one capture object (gzip JSON lines)."""
    return [json.loads(line) for line in gzip.decompress(body).splitlines() if line.strip()]
