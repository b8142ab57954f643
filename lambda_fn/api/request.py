"""Reading a request: its payload format, id and size, its media type, and its body as text or strict JSON.

JSON is read as the stream reads a record (`records.decode_json`: no NaN or Infinity, at most
MAX_JSON_DEPTH levels), and no number beyond a double's range nor a lone surrogate: the answer must be
strict JSON too.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver

from lambda_fn.api.errors import JSON, ApiError, InputError
from lambda_fn.records import decode_json

# What JSON can spell but an answer could not carry: a number beyond a double (1e400 reads as inf: an
# exponent of 3+ digits or a run of 309+ digits) and a lone surrogate escape (\\ud800 is no Unicode). Only
# a body with one of these is walked.
_LARGE_NUMBER = re.compile(rb"[eE]\+?0*[1-9][0-9]{2}|[0-9]{309}")
_SURROGATE = re.compile(rb"\\[uU][dD][89a-fA-F]")


def payload_kind(event: dict[str, Any]) -> str:
    """REST API v1, HTTP API v2 or a function URL (v2 format, no routeKey of its own)."""
    if event.get("version") == "2.0":
        domain = str((event.get("requestContext") or {}).get("domainName", ""))
        return "url" if ".lambda-url." in domain else "http"
    return "rest"


def request_id(event: dict[str, Any], context: Any) -> str:
    rid = (event.get("requestContext") or {}).get("requestId")
    return str(rid or getattr(context, "aws_request_id", "") or "")


def body_size(event: dict[str, Any]) -> int:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return len(body) * 3 // 4
    return len(body.encode("utf-8")) if not body.isascii() else len(body)


def _unwritable(value: Any) -> str | None:
    """Why a decoded body could not be echoed as strict JSON (walked without recursion), or None."""
    stack = [value]
    while stack:
        node = stack.pop()
        t = type(node)
        if t is float and not math.isfinite(node):
            return "a number is beyond the range of a double (it would read as Infinity)"
        if t is str:
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return "a string holds a lone surrogate escape (not Unicode text)"
        elif t is dict:
            stack.extend(node)
            stack.extend(node.values())
        elif t is list:
            stack.extend(node)
    return None


def parse_json(body: str | bytes) -> Any:
    """Strict JSON that an answer could echo; InputError with the reason otherwise."""
    try:
        data = body.encode("utf-8") if isinstance(body, str) else body
        value = decode_json(data)
    except ValueError as exc:  # UnicodeError included (a lone surrogate cannot be UTF-8)
        raise InputError(f"malformed JSON: {exc}") from None
    why = _unwritable(value) if _LARGE_NUMBER.search(data) or _SURROGATE.search(data) else None
    if why is not None:
        raise InputError(f"malformed JSON: {why}")
    return value


def media_type(app: ApiGatewayResolver) -> tuple[str, dict[str, str]]:
    raw = app.current_event.headers.get("content-type") or app.current_event.headers.get("Content-Type") or ""
    parts = [p.strip() for p in raw.split(";")]
    params = {k.strip().lower(): v.strip().strip('"') for k, _, v in (p.partition("=") for p in parts[1:] if p)}
    return parts[0].lower(), params


def body_text(app: ApiGatewayResolver, allowed: tuple[str, ...]) -> tuple[str, str]:
    """The request body as text and its media type; 415 for other types or charsets."""
    media, params = media_type(app)
    if media == "" and JSON in allowed:
        media = JSON  # clients that omit Content-Type (curl --data-raw, fetch) mean JSON here
    if media not in allowed:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type {media or '(none)'!r} is not supported here; use {' or '.join(allowed)}",
        )
    charset = params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise ApiError(415, "unsupported_media_type", f"charset {charset!r} is not supported; send UTF-8")
    event = app.current_event
    raw = event.body or ""
    try:
        if event.is_base64_encoded:
            raw = base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        raise ApiError(400, "malformed_body", "the body is not valid UTF-8 text") from None
    if not raw.strip():
        raise ApiError(400, "empty_body", "the request body is empty")
    return raw, media


def json_text(text: str) -> Any:
    """A body already read as text, parsed as strict JSON; 400 `malformed_json` otherwise."""
    try:
        return parse_json(text)
    except InputError as exc:
        raise ApiError(400, "malformed_json", exc.message) from None


def json_body(app: ApiGatewayResolver) -> Any:
    return json_text(body_text(app, (JSON,))[0])
