"""What the kit writes: strict JSON, every field bounded, partition keys Kinesis accepts.

Producers control record data, ids and partition keys; models control predictions. Nothing they send
may make an output unparseable (NaN, lone surrogates), unacceptable to a service (a partition key of
0 or 300 characters, a message over SQS' 256 KiB) or raise while it is encoded. Each field passes
through one of these functions before the one strict encoder (`encode_json`, below) sees it; a field
that had to change is written cut or cleaned, next to the sha256 of the original. `lambda_fn.outputs`
builds the records themselves.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import orjson

MAX_PARTITION_KEY_CHARS = 256  # Kinesis: 1-256 Unicode characters (counted in UTF-16 units, as Java does)
ID_MAX_BYTES = 1024  # an id as written (JSON text); a longer one is cut and carries its digest
TEXT_MAX_BYTES = 2048  # a detail, a model name, a partition key as written (JSON text)
_quote = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
_unicode = json.JSONEncoder(separators=(",", ":"), default=str, allow_nan=False, ensure_ascii=False).encode
_loose = json.JSONEncoder(separators=(",", ":"), default=str).encode  # for digests only, never written
# The reference semantics of the strict encoder below: compact, NaN and Infinity raise (ValueError), ASCII only
# (so a body is valid for SQS' XML characters whatever its strings hold), other objects written as str().
_stdlib = json.JSONEncoder(separators=(",", ":"), default=str, allow_nan=False).encode
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME  # both go to str(), as above


def _default(value: Any) -> Any:
    """What orjson cannot write itself: a float subclass (numpy.float64) is a number, anything else its str()."""
    return float(value) if isinstance(value, float) else str(value)


def _non_finite(value: Any) -> bool:
    """Whether a NaN or an infinity is anywhere in `value` (walked without recursion; leaves checked in place)."""
    if not isinstance(value, dict | list | tuple):
        return isinstance(value, float) and not math.isfinite(value)
    stack = [value]
    while stack:
        node = stack.pop()
        for v in node.values() if isinstance(node, dict) else node:
            t = type(v)
            if t is str or t is int or v is None or t is bool:
                continue
            if isinstance(v, float):
                if not math.isfinite(v):
                    return True
            elif isinstance(v, dict | list | tuple):
                stack.append(v)
    return False


def encode_json_bytes(value: Any) -> bytes:
    """Compact, strict, ASCII JSON of `value`: the one encoder of every record the kit writes.

    orjson writes it; it would turn NaN and Infinity into `null`, so a document holding `null` is checked for
    them and refused exactly as `json` refuses them (ValueError "... not JSON compliant"). What orjson refuses
    (an int beyond 64 bits, a non-str key, a lone surrogate, a cycle) and what it would write as raw UTF-8 or
    DEL goes through `json` instead, so the result, or the error, is the same as the standard encoder's.
    """
    try:
        data = orjson.dumps(value, default=_default, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        return _stdlib(value).encode()
    if not data.isascii() or b"\x7f" in data or (b"null" in data and _non_finite(value)):
        return _stdlib(value).encode()
    return data


def encode_json(value: Any) -> str:
    """`encode_json_bytes` as text (for a field spliced into a record)."""
    return encode_json_bytes(value).decode()


def clean_text(text: str) -> str:
    """`text` as valid Unicode: lone surrogates (JSON's `\\ud800` decodes to one) become U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def utf8(text: str) -> bytes:
    """The UTF-8 bytes of any str, lone surrogates included: for digests and hashing, never for output."""
    return text.encode("utf-8", "surrogatepass")


def fit_text(text: str, max_bytes: int = TEXT_MAX_BYTES) -> tuple[str, str, bool]:
    """(`text` cleaned and cut to fit, its JSON literal of at most `max_bytes` ASCII bytes, whether it was cut)."""
    clean = clean_text(text)
    literal = _quote(clean)
    if len(literal) <= max_bytes:
        return clean, literal, False
    keep = len(clean) * max(0, max_bytes - 2) // len(literal)
    while keep:
        part = clean[:keep]
        literal = _quote(part)
        if len(literal) <= max_bytes:
            return part, literal, True
        keep = keep * 9 // 10
    return "", '""', True


def bounded_text(text: str, max_bytes: int = TEXT_MAX_BYTES) -> str:
    """`text` cleaned and cut so that its JSON literal fits `max_bytes` (a value put in a dict before encoding)."""
    return fit_text(text, max_bytes)[0]


def _text_of(value: Any) -> str:
    try:
        return _loose(value)
    except (ValueError, TypeError, RecursionError):  # a >4300-digit int, a cycle, a str() that raises
        return f"<{type(value).__name__}>"


def digest_of(value: Any) -> str:
    """sha256 of a value as it arrived: a string's UTF-8 bytes, any other value's compact JSON."""
    return hashlib.sha256(utf8(value if type(value) is str else _text_of(value))).hexdigest()


def bounded_json(value: Any, max_bytes: int = ID_MAX_BYTES) -> tuple[str, str | None]:
    """A JSON value (an id) as strict JSON text of at most `max_bytes`, and the original's sha256 if it changed.

    Plain values pass unchanged (one type check in the common case). A value that is too long, holds
    lone surrogates or non-finite numbers, or cannot be encoded is written as a (cut) string instead.
    """
    t = type(value)
    if value is None:
        return "null", None
    if t is str:
        clean, literal, cut = fit_text(value, max_bytes)
        return literal, (digest_of(value) if cut or clean is not value else None)
    if t is bool or (t is int and -(10**18) < value < 10**18) or (t is float and math.isfinite(value)):
        return encode_json(value), None
    try:
        _unicode(value).encode("utf-8")  # raises on NaN, lone surrogates, cycles, depth
        text = encode_json(value)
    except (ValueError, TypeError, RecursionError):
        return fit_text(_text_of(value), max_bytes)[1], digest_of(value)
    if len(text) <= max_bytes:
        return text, None
    return fit_text(text, max_bytes)[1], digest_of(value)


def finite_or_none(value: Any) -> float | int | None:
    """A number fit for strict JSON (an arrival timestamp), else None."""
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return value  # type: ignore[no-any-return]
    return None


def partition_key(key: str, fallback: str = "0") -> str:
    """A Kinesis partition key for `key`: itself when it is 1-256 characters of valid Unicode, else its sha256.

    The digest keeps the records of one entity on one shard whatever their key looks like.
    """
    if not key:
        key = fallback or "0"
    if key.isascii():
        if len(key) <= MAX_PARTITION_KEY_CHARS:
            return key
    elif clean_text(key) is key and len(key.encode("utf-16-le")) // 2 <= MAX_PARTITION_KEY_CHARS:
        return key
    return hashlib.sha256(utf8(key)).hexdigest()
