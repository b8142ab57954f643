"""Every answer other than 2xx: the one error body and the translation of exceptions into responses.

Errors share one body, `ErrorResponse` (`{"error": {"code", "message", "details": [{"row", "field",
"message"}]}, "request_id"}`). Who is at fault decides the status: 4xx name the row and field; a 5xx
never carries an exception's text (it is logged with the request id instead). Every body is strict
JSON: a value it cannot spell (NaN) raises, and the request is a 500, never a body a strict client
cannot parse.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from pydantic import BaseModel, ValidationError

from lambda_fn.api.schemas import ErrorResponse, check
from lambda_fn.config import service_name

JSON = "application/json"
CSV = "text/csv"

logger = Logger(service=service_name(), child=True)
encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_QUOTED = re.compile(r"'([^']+)'")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the input; `row` is None when it is about the request as a whole."""

    message: str
    field: str | None = None
    row: int | None = None


@dataclass(slots=True)
class InputError(ValueError):
    """The request cannot be read as rows; `problems` name the field (and row) at fault."""

    message: str
    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message


@dataclass(slots=True)
class ApiError(Exception):
    """An answer other than 2xx; raised anywhere below a route, rendered in one place."""

    status: int
    code: str
    message: str
    details: list[Problem] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


def bad_input(exc: InputError) -> ApiError:
    return ApiError(400, "invalid_input", exc.message, exc.problems)


def _path(loc: tuple[int | str, ...]) -> str | None:
    """pydantic's location as the field path a client reads: ("inputs", 0, "datatype") → inputs[0].datatype."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def invalid_body(exc: ValidationError, what: str, skip: int = 0) -> InputError:
    """The one translation of a request model's ValidationError: one Problem per error, named by its path.

    `skip` drops location parts that are not fields (the tag a discriminated union puts first). The
    message is pydantic's (or a model's own), never the input: a bad value is not echoed.
    """
    problems = [
        Problem(str(e["msg"]), _path(tuple(e["loc"])[skip:]))
        for e in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    listed = "; ".join(f"{p.field}: {p.message}" if p.field else p.message for p in problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return InputError(f"{what}: {listed}{more}", problems)


def problems_from_rows(errors: dict[int, str]) -> list[Problem]:
    """Row messages from validation ("field 'x' must be ...; missing required field 'y'") → one detail each."""
    out = []
    for row in sorted(errors):
        for part in errors[row].split("; "):
            names = _QUOTED.findall(part)
            out.append(Problem(part, names[0] if len(names) == 1 else (", ".join(names) or None), row))
    return out


def json_response(
    schema: type[BaseModel] | None, body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response[str]:
    """`body` checked against its wire model (`lambda_fn.api.schemas`) and written as strict JSON."""
    if schema is not None:
        check(schema, body)
    return Response(status_code=status, content_type=JSON, body=encode(body), headers=headers or {})


MAX_DETAILS = 100
"""Problems listed in one error body; past that, `details_total` gives the count (a body stays small)."""


def error_body(err: ApiError, request_id: str) -> dict[str, Any]:
    details = [{"row": p.row, "field": p.field, "message": p.message} for p in err.details[:MAX_DETAILS]]
    info: dict[str, Any] = {"code": err.code, "message": err.message, "details": details}
    if len(err.details) > MAX_DETAILS:
        info["details_total"] = len(err.details)
    return {"error": info, "request_id": request_id}


def error_response(err: ApiError, request_id: str) -> Response[str]:
    """The one rendering of an ApiError (logged by class: a 5xx as an error, a 4xx as information)."""
    if err.status >= 500:
        logger.error("request failed", extra={"status": err.status, "code": err.code})
    else:
        logger.info("request rejected", extra={"status": err.status, "code": err.code, "error": err.message})
    return json_response(ErrorResponse, error_body(err, request_id), err.status, dict(err.headers))


def crash_response(request_id: str) -> Response[str]:
    """An exception nothing translated: logged with its traceback, answered as a 500 without its text."""
    logger.exception("unhandled error")
    err = ApiError(500, "internal_error", "internal error; see the function logs with this request id")
    return json_response(ErrorResponse, error_body(err, request_id), 500)


def too_large(kind: str, limit: int, request_id: str) -> dict[str, Any]:
    """413 before any parsing, as the proxy result itself: the body is never decoded."""
    err = ApiError(413, "payload_too_large", f"the request body exceeds {limit} bytes (API_MAX_BODY_BYTES)")
    logger.info("request rejected", extra={"status": 413, "code": err.code})
    result: dict[str, Any] = {"statusCode": 413, "body": encode(error_body(err, request_id)), "isBase64Encoded": False}
    if kind == "rest":
        result["multiValueHeaders"] = {"Content-Type": [JSON]}
    else:
        result["headers"] = {"Content-Type": JSON}
    return result
