"""A real HTTP server on 127.0.0.1 in front of the API Lambda handler, for `make serve`, tests and demos.

Each request becomes the API Gateway proxy event that AWS would send (REST API v1 by default, HTTP API
v2 or a function URL on request) and goes to the handler with a fake Lambda context, so `curl` and any
HTTP client exercise exactly the code that runs in Lambda. Like API Gateway, the server refuses bodies
over 10 MiB itself (413) and turns a handler crash into 502; everything else is the handler's answer.
It reads bodies by Content-Length or chunked transfer coding, answers HEAD as the GET without its body,
and answers every request it cannot read in the kit's error body (`lambda_fn.api.errors`), never a
traceback or a hang. Each answer is one write with TCP_NODELAY: as two small writes (headers, body) it
waited ~40 ms on the client's delayed ACK on every kept-alive request. Nothing here is shipped in the image.
"""

from __future__ import annotations

import base64
import io
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from servingkit.lambda_context import ACCOUNT, LambdaContext, function_arn

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
PayloadVersion = Literal["1.0", "2.0", "url"]

GATEWAY_MAX_BODY = 10 * 1024 * 1024
"""API Gateway's own payload quota; the handler's API_MAX_BODY_BYTES is normally far lower."""
DRAIN_MAX = 64 * 1024 * 1024
"""How much of a refused body is read and dropped before the connection is closed."""
READ_TIMEOUT_S = 30.0
"""How long a connection may sit silent mid-request (or idle between keep-alive requests)."""
API_FUNCTION = "model-api"
API_ID = "local"
STAGE = "$default"
_BAD_GATEWAY = b'{"message":"Internal server error"}'
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded")


def api_context(timeout_s: float = 30.0) -> LambdaContext:
    """The context of one API invocation: the API function's names, a fresh request id, its timeout."""
    return LambdaContext(API_FUNCTION, function_arn(API_FUNCTION, account=ACCOUNT), timeout_ms=int(timeout_s * 1000))


def _is_text(content_type: str | None) -> bool:
    ctype = (content_type or "").split(";")[0].strip().lower()
    return not ctype or ctype.startswith(_TEXT_TYPES) or ctype.endswith("+json")


def _encode_body(body: bytes, content_type: str | None) -> tuple[str | None, bool]:
    """API Gateway passes text as is and other media types base64-encoded."""
    if not body:
        return None, False
    if _is_text(content_type):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def build_event(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    payload_version: PayloadVersion = "1.0",
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """The proxy event API Gateway (or a function URL) would send for this request."""
    url = urlsplit(target)
    path = url.path or "/"
    query = parse_qsl(url.query, keep_blank_values=True)
    request_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    epoch_ms = int(now.timestamp() * 1000)
    content_type = next((v for k, v in headers if k.lower() == "content-type"), None)
    user_agent = next((v for k, v in headers if k.lower() == "user-agent"), "")
    text, is_b64 = _encode_body(body, content_type)
    if payload_version == "1.0":
        multi_headers: dict[str, list[str]] = {}
        for k, v in headers:
            multi_headers.setdefault(k, []).append(v)
        multi_query: dict[str, list[str]] = {}
        for k, v in query:
            multi_query.setdefault(k, []).append(v)
        return {
            "resource": "/{proxy+}",
            "path": path,
            "httpMethod": method,
            "headers": {k: vs[-1] for k, vs in multi_headers.items()},
            "multiValueHeaders": multi_headers,
            "queryStringParameters": {k: vs[-1] for k, vs in multi_query.items()} or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": {"proxy": path.lstrip("/")},
            "stageVariables": None,
            "requestContext": {
                "accountId": ACCOUNT,
                "apiId": API_ID,
                "resourceId": "proxy",
                "resourcePath": "/{proxy+}",
                "httpMethod": method,
                "path": path,
                "stage": STAGE,
                "requestId": request_id,
                "extendedRequestId": request_id,
                "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "requestTimeEpoch": epoch_ms,
                "protocol": "HTTP/1.1",
                "domainName": "127.0.0.1",
                "identity": {"sourceIp": source_ip, "userAgent": user_agent},
            },
            "body": text,
            "isBase64Encoded": is_b64,
        }
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for k, v in headers:
        key = k.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in v.split(";") if c.strip())
            continue
        joined[key] = f"{joined[key]},{v}" if key in joined else v
    route_key = "$default" if payload_version == "url" else "ANY /{proxy+}"
    domain = f"{API_ID}.lambda-url.us-east-1.on.aws" if payload_version == "url" else "127.0.0.1"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": url.query,
        "cookies": cookies or None,
        "headers": joined,
        "queryStringParameters": {k: v for k, v in query} or None,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": API_ID,
            "domainName": domain,
            "domainPrefix": API_ID,
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": user_agent,
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": STAGE,
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": epoch_ms,
        },
        "body": text,
        "isBase64Encoded": is_b64,
    }
    if payload_version != "url":
        event["pathParameters"] = {"proxy": path.lstrip("/")}
    return {k: v for k, v in event.items() if v is not None}


def response_parts(result: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body bytes of a proxy integration response (v1 or v2)."""
    status = int(result.get("statusCode", 200))
    out: list[tuple[str, str]] = []
    multi = result.get("multiValueHeaders") or {}
    for k, v in (result.get("headers") or {}).items():
        if k not in multi:
            out.append((k, str(v)))
    for k, vs in multi.items():
        out.extend((k, str(v)) for v in vs)
    out.extend(("Set-Cookie", c) for c in result.get("cookies") or ())
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
    return status, out, body


def _default_handler() -> Handler:
    from lambda_fn.handler import api_handler

    handler: Handler = api_handler
    return handler


class RequestError(Exception):
    """A request the server refuses before the handler sees it, answered in the kit's error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


_MAX_CHUNK_LINE = 4096
_MAX_TRAILERS = 100


def error_bytes(status: int, code: str, message: str) -> bytes:
    """The kit's error body (`lambda_fn.api.errors`), for answers the server gives itself."""
    from lambda_fn.api.errors import ApiError, encode, error_body

    return encode(error_body(ApiError(status, code, message), str(uuid.uuid4()))).encode()


def _too_large(limit: int) -> RequestError:
    message = f"the request body exceeds {limit} bytes (API Gateway's payload limit)"
    return RequestError(413, "payload_too_large", message)


def _chunk_size(rfile: io.BufferedIOBase) -> int:
    line = rfile.readline(_MAX_CHUNK_LINE + 1)
    if not line:
        raise RequestError(400, "malformed_body", "the chunked body ended before its last chunk")
    if len(line) > _MAX_CHUNK_LINE or not line.endswith(b"\n"):
        raise RequestError(400, "malformed_body", "a chunk-size line is too long")
    size = line.split(b";", 1)[0].strip()
    if not size or not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", size):
        raise RequestError(400, "malformed_body", "a chunk size is not a hexadecimal number")
    return int(size, 16)


def _drain(rfile: io.BufferedIOBase, size: int) -> int:
    """Read and drop up to `size` bytes; how many were there."""
    dropped = 0
    while dropped < size and (chunk := rfile.read(min(size - dropped, 1 << 16))):
        dropped += len(chunk)
    return dropped


def _drain_chunks(rfile: io.BufferedIOBase, size: int, total: int) -> None:
    """Drop the rest of a refused chunked body (a chunk of `size` is next), up to DRAIN_MAX in all."""
    try:
        while size > 0 and total <= DRAIN_MAX and _drain(rfile, size + 2) == size + 2:
            size = _chunk_size(rfile)
            total += size
        for _ in range(_MAX_TRAILERS):
            if size > 0 or rfile.readline(_MAX_CHUNK_LINE) in (b"\r\n", b"\n", b""):
                return
    except RequestError:
        return  # malformed as well: the 413 stands, and the connection closes


def read_chunked(rfile: io.BufferedIOBase, limit: int) -> bytes:
    """A `Transfer-Encoding: chunked` body (RFC 9112 7.1), at most `limit` bytes; trailers are read and dropped.

    Over the limit the rest is read and dropped (up to DRAIN_MAX), so the client reads the 413 instead of
    a reset connection.
    """
    parts: list[bytes] = []
    total = 0
    while (size := _chunk_size(rfile)) > 0:
        total += size
        if total > limit:
            _drain_chunks(rfile, size, total)
            raise _too_large(limit)
        data = rfile.read(size)
        if len(data) < size or rfile.read(2) != b"\r\n":
            raise RequestError(400, "malformed_body", "a chunk is shorter than its size says")
        parts.append(data)
    for _ in range(_MAX_TRAILERS):
        if rfile.readline(_MAX_CHUNK_LINE) in (b"\r\n", b"\n", b""):
            return b"".join(parts)
    raise RequestError(400, "malformed_body", f"more than {_MAX_TRAILERS} trailer lines")


def content_length(headers: Any) -> int:
    """The declared body length; one non-negative integer (repeated equal values allowed), else 400."""
    values = {v.strip() for raw in headers.get_all("Content-Length") or () for v in raw.split(",")}
    if not values:
        return 0
    if len(values) != 1 or not next(iter(values)).isdigit():
        raise RequestError(400, "malformed_request", "Content-Length is not one non-negative integer")
    return int(next(iter(values)))


def read_body(rfile: io.BufferedIOBase, headers: Any, limit: int | None = None) -> bytes:
    """The request body by Content-Length or chunked transfer coding, refused (RequestError) over `limit`
    (default GATEWAY_MAX_BODY)."""
    limit = GATEWAY_MAX_BODY if limit is None else limit
    coding = ",".join(headers.get_all("Transfer-Encoding") or ()).strip().lower()
    if coding:
        if headers.get("Content-Length") is not None:
            raise RequestError(400, "malformed_request", "both Transfer-Encoding and Content-Length are set")
        if coding != "chunked":
            raise RequestError(501, "unsupported_transfer_encoding", "only Transfer-Encoding: chunked is supported")
        return read_chunked(rfile, limit)
    length = content_length(headers)
    if length > limit:
        _drain(rfile, min(length, DRAIN_MAX))  # so the client reads the answer instead of a reset connection
        raise _too_large(limit)
    body = rfile.read(length) if length else b""
    if len(body) < length:
        raise RequestError(400, "malformed_body", "the body is shorter than Content-Length says")
    return body


def response_bytes(
    status: int, reason: str, headers: list[tuple[str, str]], data: bytes, *, head: bool, close: bool
) -> bytes:
    """The whole HTTP/1.1 response as one buffer: written with one send, it never waits on a delayed ACK."""
    lines = [f"HTTP/1.1 {status} {reason}", "Server: servingkit-local", f"Date: {formatdate(usegmt=True)}"]
    lines += [f"{k}: {v}" for k, v in headers if k.lower() not in _HOP_HEADERS]
    lines.append(f"Content-Length: {len(data)}")
    if close:
        lines.append("Connection: close")
    head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    return head_bytes if head or status in (204, 304) else head_bytes + data


_HOP_HEADERS = ("content-length", "connection", "transfer-encoding", "server", "date", "keep-alive")
_JSON_HEADERS = [("Content-Type", "application/json")]


def make_server(
    handler: Handler | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    payload_version: PayloadVersion = "1.0",
    log: Callable[[str], None] | None = None,
) -> tuple[ThreadingHTTPServer, str]:
    """A server (not yet serving) that feeds `handler` API Gateway events; returns it and its base URL.

    `handler` defaults to `lambda_fn.handler.api_handler`. Port 0 picks a free port. Call
    `serve_forever()` (in a thread if needed) and `shutdown()`/`server_close()` when done, or use `serving()`.
    """
    target = handler or _default_handler()
    # A Lambda container handles one event at a time, and Powertools' resolver keeps per-request state
    # on the app object: serialise calls as Lambda would (connections are still accepted concurrently).
    lock = threading.Lock()

    class _Request(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "servingkit-local"
        disable_nagle_algorithm = True  # TCP_NODELAY: an answer is sent as soon as it is written
        timeout = READ_TIMEOUT_S  # a client that stops sending mid-request is answered 408, not waited on

        def _dispatch(self) -> None:
            try:
                body = read_body(self.rfile, self.headers)
            except RequestError as err:
                self.close_connection = True  # what is left of the body is unread: this connection is done
                self._reply(err.status, _JSON_HEADERS, error_bytes(err.status, err.code, err.message))
                return
            except TimeoutError:
                self.close_connection = True
                body_408 = error_bytes(408, "request_timeout", "the request body stopped arriving")
                self._reply(408, _JSON_HEADERS, body_408)
                return
            # HEAD is GET without the body (RFC 9110 9.3.2): the handler answers the GET, the body is dropped.
            method = "GET" if self.command == "HEAD" else self.command
            event = build_event(
                method,
                self.path,
                list(self.headers.items()),
                body,
                payload_version=payload_version,
                source_ip=self.client_address[0],
            )
            try:
                with lock:
                    result = target(event, api_context())
                status, headers, data = response_parts(result)
            except Exception as exc:  # noqa: BLE001 - API Gateway answers 502 when the integration fails
                if log:
                    log(f"handler failed: {type(exc).__name__}: {exc}")
                status, headers, data = 502, _JSON_HEADERS, _BAD_GATEWAY
            self._reply(status, headers, data)

        def _reply(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
            self.log_request(status, len(data))
            reason = self.responses.get(status, ("",))[0]
            head = self.command == "HEAD"
            self.wfile.write(response_bytes(status, reason, headers, data, head=head, close=self.close_connection))

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """Errors the standard library finds (bad request line, headers too long...) in the kit's body."""
            self.close_connection = True
            if not hasattr(self, "command") or self.command is None:
                self.command = ""
            text = message or self.responses.get(code, ("error",))[0]
            codes = {400: "malformed_request", 414: "uri_too_long", 431: "headers_too_large", 505: "http_version"}
            self._reply(code, _JSON_HEADERS, error_bytes(code, codes.get(code, "malformed_request"), text))

        def __getattr__(self, name: str) -> Any:
            # Every method (GET, TRACE, QUERY...) goes to the handler, which answers 405 where it has no route.
            if name.startswith("do_"):
                return self._dispatch
            raise AttributeError(name)

        def log_message(self, format: str, *args: Any) -> None:
            if log:
                log(format % args)

    server = ThreadingHTTPServer((host, port), _Request)
    server.daemon_threads = True
    bound_host, bound_port = server.server_address[:2]
    return server, f"http://{bound_host!s}:{bound_port}"


@contextmanager
def serving(
    handler: Handler | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    payload_version: PayloadVersion = "1.0",
) -> Iterator[str]:
    """Run the server in a background thread for the duration of the block; yields the base URL."""
    server, url = make_server(handler, host, port, payload_version=payload_version)
    thread = threading.Thread(target=server.serve_forever, name="http-local", daemon=True)
    thread.start()
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def demo_environment() -> dict[str, str]:
    """API settings for the exported demo model (`make model`), pinned by its release sha256.

    Variables already set in the environment win, so `MODEL_URI=... make serve` serves another model.
    """
    import os

    from lambda_fn.config import Env
    from servingkit.train import demo_artifact

    if os.environ.get(Env.MODEL_URI):
        return {}
    model_dir, release = demo_artifact()
    env = {
        Env.MODEL_URI: str(model_dir),
        Env.MODEL_SHA256: str(release["sha256"]),
        Env.MODEL_NAME: str(release["name"]),
        Env.MODEL_VERSION: str(release["version"]),
    }
    for key, name in (
        ("feature_hook", Env.FEATURE_HOOK),
        ("features_field", Env.FEATURES_FIELD),
        ("id_field", Env.ID_FIELD),
    ):
        if release.get(key):
            env[name] = str(release[key])
    return env
