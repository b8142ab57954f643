"""Lambda's Runtime API on this machine: the HTTP interface a runtime inside the image polls for invocations.

AWS's base images boot the handler with `awslambdaric`, which reads `AWS_LAMBDA_RUNTIME_API=host:port` and
talks to this server exactly as it talks to Lambda (version 2018-06-01, HTTP/1.1 keep-alive through libcurl):

- `GET  /2018-06-01/runtime/invocation/next` long-polls until an invocation is queued, then answers 200 with the
  event and `Lambda-Runtime-Aws-Request-Id`, `-Deadline-Ms`, `-Invoked-Function-Arn`, `-Trace-Id` (and
  `-Client-Context`, `-Cognito-Identity` when given);
- `POST /2018-06-01/runtime/invocation/{AwsRequestId}/response` and `.../error` answer 202, or 400
  `InvalidRequestID` for a request id that is not the one in flight (unknown, already answered, timed out);
  a response over Lambda's limit (6 MiB + 100 bytes) answers 413 and ends the invocation with the function
  error `Function.ResponseSizeTooLarge`, as RAPID does;
- `POST /2018-06-01/runtime/init/error` answers 202; the waiting invocation, and every later one until
  `reset()`, ends with that init error (type and message).
Anything else is 404 (405 for a known path with another method), each with Lambda's JSON error body.

The caller's side is `RuntimeAPI.invoke()`: one invocation at a time, like one execution environment.
Its result carries what Lambda's Invoke returns (the payload, or the error document with its type) and when
the runtime picked it up and finished it. Timeouts follow Lambda: the deadline starts when the runtime takes
the event; after one, Lambda discards the execution environment, so the caller restarts the runtime and
calls `reset()` (a late answer for the old request id gets 400).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import select
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from servingkit.localcloud.emulator import LOCALHOST

log = logging.getLogger(__name__)

API_VERSION = "2018-06-01"
#: RAPID's limit on a response posted by the runtime: 6 MiB + 100 bytes.
MAX_RESPONSE_BYTES = 6 * 1024 * 1024 + 100
#: Lambda's limit on the init phase; the default wait for the runtime to take an invocation.
INIT_TIMEOUT_S = 10.0

ERROR_TIMEOUT = "Sandbox.Timedout"
ERROR_RESPONSE_TOO_LARGE = "Function.ResponseSizeTooLarge"
ERROR_RUNTIME_EXIT = "Runtime.ExitError"
#: Error type when the runtime posts an error without one (neither in the body nor in the header).
ERROR_UNHANDLED = "Unhandled"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"

_PREFIX = f"/{API_VERSION}/runtime"
_NEXT = f"{_PREFIX}/invocation/next"
_INIT_ERROR = f"{_PREFIX}/init/error"
_INVOCATION = re.compile(rf"^{re.escape(_PREFIX)}/invocation/(?P<id>[^/]+)/(?P<kind>response|error)$")
_CHUNK = 64 * 1024
_LINE = 65_536


class RuntimeAPIClosedError(RuntimeError):
    """The server was closed before or during an invocation."""


@dataclass(frozen=True)
class ErrorReport:
    """An error as Lambda reports it: `errorType`, `errorMessage`, `stackTrace`."""

    type: str
    message: str
    stack_trace: tuple[str, ...] = ()

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"errorMessage": self.message, "errorType": self.type}
        if self.stack_trace:
            doc["stackTrace"] = list(self.stack_trace)
        return doc


@dataclass(frozen=True)
class Timings:
    """Monotonic clock (`time.monotonic()`) readings of one invocation."""

    queued_at: float
    picked_up_at: float | None  # the runtime's GET /next took it; None if it never did
    done_at: float

    @property
    def queue_s(self) -> float | None:
        """Queued → picked up (on a cold start this includes the runtime's init)."""
        return None if self.picked_up_at is None else self.picked_up_at - self.queued_at

    @property
    def run_s(self) -> float | None:
        """Picked up → response or error posted (the handler's duration, as Lambda bills it)."""
        return None if self.picked_up_at is None else self.done_at - self.picked_up_at

    @property
    def total_s(self) -> float:
        return self.done_at - self.queued_at


@dataclass(frozen=True)
class Invocation:
    """The outcome of one invocation.

    `payload` is what Lambda's Invoke returns: the decoded JSON of the response (bytes when it is not JSON),
    or for an error the error document (`errorMessage`, `errorType`, ...). `error` is None on success.
    """

    request_id: str
    payload: Any
    error: ErrorReport | None
    timings: Timings
    cold: bool  # the first invocation this execution environment took (since start or reset())
    raw_payload: bytes = b""
    content_type: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def timed_out(self) -> bool:
        return self.error is not None and self.error.type == ERROR_TIMEOUT


class _RefusalError(Exception):
    """A runtime request answered with a Lambda error body."""

    def __init__(self, status: HTTPStatus, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


_INVALID_REQUEST_ID = (HTTPStatus.BAD_REQUEST, "InvalidRequestID", "Invalid request ID")


@dataclass
class _Pending:
    request_id: str
    body: bytes
    timeout_s: float
    function_arn: str
    trace_id: str
    client_context: str | None
    cognito_identity: str | None
    queued_at: float
    picked_up_at: float | None = None
    deadline_ms: int = 0
    cold: bool = False
    done: Invocation | None = None

    def headers(self) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": self.request_id,
            "Lambda-Runtime-Deadline-Ms": str(self.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": self.function_arn,
            "Lambda-Runtime-Trace-Id": self.trace_id,
        }
        if self.client_context is not None:
            headers["Lambda-Runtime-Client-Context"] = self.client_context
        if self.cognito_identity is not None:
            headers["Lambda-Runtime-Cognito-Identity"] = self.cognito_identity
        return headers

    def finish(self, payload: Any, error: ErrorReport | None, raw: bytes, content_type: str | None) -> None:
        timings = Timings(self.queued_at, self.picked_up_at, time.monotonic())
        self.done = Invocation(self.request_id, payload, error, timings, self.cold, raw, content_type)

    def fail(self, error: ErrorReport, document: Any = None, raw: bytes | None = None) -> None:
        doc = error.document() if document is None else document
        self.finish(doc, error, json.dumps(doc).encode() if raw is None else raw, "application/json")


class RuntimeAPI:
    """Lambda's Runtime API for one execution environment, served on `address` ("127.0.0.1:PORT").

    Start the runtime with `AWS_LAMBDA_RUNTIME_API=<address>` and drive it with `invoke()`. Thread-safe.
    """

    def __init__(self, host: str = LOCALHOST, port: int = 0) -> None:
        self._cond = threading.Condition()
        self._invoke_lock = threading.Lock()
        self._generation = 0
        self._pending: _Pending | None = None
        self._polling = False
        self._dispatched = 0
        self._init_error: ErrorReport | None = None
        self._init_document: Any = None
        self._exit_error: ErrorReport | None = None
        self._closed = False
        self._connections: set[socket.socket] = set()
        self._server = _Server((host, port), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="runtime-api", daemon=True
        )
        self._thread.start()

    # ----- the caller's side -----

    @property
    def address(self) -> str:
        """`host:port`, the value of `AWS_LAMBDA_RUNTIME_API`."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def polling(self) -> bool:
        """The runtime of this execution environment has called GET /next (its init is done)."""
        with self._cond:
            return self._polling

    @property
    def init_error(self) -> ErrorReport | None:
        """What the runtime posted to /init/error since start or `reset()`."""
        with self._cond:
            return self._init_error

    def invoke(
        self,
        event: dict[str, Any] | bytes,
        *,
        timeout_s: float,
        function_arn: str,
        request_id: str | None = None,
        client_context: Mapping[str, Any] | None = None,
        cognito_identity: Mapping[str, Any] | None = None,
        trace_id: str | None = None,
        pickup_timeout_s: float = INIT_TIMEOUT_S,
    ) -> Invocation:
        """Queue one event, wait until the runtime answers it, and return the outcome.

        `timeout_s` is the function's timeout: the deadline the runtime sees starts when it takes the event.
        `pickup_timeout_s` bounds the wait for the runtime to take it (a cold start's init included).
        Either wait ending gives an `Invocation` with error type `Sandbox.Timedout` (`timed_out`). An init
        error or a reported runtime exit ends it (and later ones, until `reset()`) with that error.
        Concurrent callers are served one after the other. Raises `RuntimeAPIClosedError` after `close()`.
        """
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        rid = request_id or str(uuid.uuid4())
        with self._invoke_lock, self._cond:
            if self._closed:
                raise RuntimeAPIClosedError("the Runtime API is closed")
            pending = _Pending(
                request_id=rid,
                body=body,
                timeout_s=timeout_s,
                function_arn=function_arn,
                trace_id=trace_id or _new_trace_id(),
                client_context=None if client_context is None else json.dumps(client_context),
                cognito_identity=None if cognito_identity is None else json.dumps(cognito_identity),
                queued_at=time.monotonic(),
            )
            if not self._fail_if_broken(pending):
                self._pending = pending
                self._cond.notify_all()
                log.debug("invocation %s queued", rid)
            try:
                while pending.done is None:
                    if self._closed:
                        raise RuntimeAPIClosedError(f"the Runtime API was closed during invocation {rid}")
                    now = time.monotonic()
                    if pending.picked_up_at is None:
                        limit = pending.queued_at + pickup_timeout_s
                        reason = f"the runtime did not take the invocation within {pickup_timeout_s:.2f} seconds"
                    else:
                        limit = pending.picked_up_at + timeout_s
                        reason = f"Task timed out after {timeout_s:.2f} seconds"
                    if now >= limit:
                        pending.fail(ErrorReport(ERROR_TIMEOUT, f"RequestId: {rid} Error: {reason}"))
                        log.debug("invocation %s timed out: %s", rid, reason)
                        break
                    self._cond.wait(limit - now)
            finally:
                if self._pending is pending:
                    self._pending = None
        assert pending.done is not None
        return pending.done

    def wait_until_polling(self, timeout: float) -> bool:
        """Wait until the runtime has called GET /next once (init done): True; False on timeout, init error,
        reported exit or close, whichever comes first."""
        with self._cond:
            self._cond.wait_for(self._init_settled, timeout)
            return self._polling

    def wait_for_init_error(self, timeout: float) -> ErrorReport | None:
        """Wait for the runtime's /init/error: the error; None once it polls instead (init succeeded), on
        timeout, reported exit or close."""
        with self._cond:
            self._cond.wait_for(self._init_settled, timeout)
            return self._init_error

    def report_runtime_exit(self, exit_code: int | None = None) -> None:
        """Tell the server the runtime's process (container) has exited: the invocation in flight, and later
        ones until `reset()`, end with `Runtime.ExitError` instead of waiting for their timeout. An init error
        already posted stays the reported error."""
        if exit_code is None:
            detail = "Runtime exited without providing a reason"
        elif exit_code < 0:
            detail = f"Runtime exited with error: signal: {_signal_name(-exit_code)}"
        else:
            detail = f"Runtime exited with error: exit status {exit_code}"
        with self._cond:
            if self._exit_error is None:
                self._exit_error = ErrorReport(ERROR_RUNTIME_EXIT, detail)
            if self._pending is not None and self._pending.done is None:
                self._fail_if_broken(self._pending)
            self._cond.notify_all()

    def reset(self) -> None:
        """A fresh execution environment: forget the init error, the exit and the first poll, and refuse
        (403) the previous runtime's connections. Call it before starting the new runtime."""
        with self._cond:
            self._generation += 1
            self._polling = False
            self._dispatched = 0
            self._init_error = None
            self._init_document = None
            self._exit_error = None
            pending = self._pending
            if pending is not None and pending.done is None:
                pending.fail(
                    ErrorReport(
                        ERROR_RUNTIME_EXIT,
                        f"RequestId: {pending.request_id} Error: the execution environment was reset",
                    )
                )
            self._cond.notify_all()
        log.debug("runtime API reset (generation %d)", self._generation)

    def close(self) -> None:
        """Stop serving: waiting invocations raise `RuntimeAPIClosedError`, open connections are shut down."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            connections = list(self._connections)
        self._server.shutdown()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> RuntimeAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- the runtime's side (called by the HTTP handler) -----

    def _init_settled(self) -> bool:
        """Init has an outcome: the runtime polls, posted an init error or exited; or the server is closed."""
        return self._polling or self._closed or self._init_error is not None or self._exit_error is not None

    def _fail_if_broken(self, pending: _Pending) -> bool:
        """End `pending` with the environment's init error or exit, if it has one (lock held)."""
        if self._init_error is not None:
            pending.fail(self._init_error, self._init_document)
        elif self._exit_error is not None:
            pending.fail(self._exit_error)
        else:
            return False
        self._cond.notify_all()
        return True

    def _connect(self, conn: socket.socket) -> int:
        with self._cond:
            self._connections.add(conn)
            return self._generation

    def _disconnect(self, conn: socket.socket) -> None:
        with self._cond:
            self._connections.discard(conn)

    def _check_generation(self, generation: int) -> None:
        if self._closed:
            raise _RefusalError(HTTPStatus.INTERNAL_SERVER_ERROR, "ServiceUnavailable", "the Runtime API is closed")
        if generation != self._generation:
            raise _RefusalError(
                HTTPStatus.FORBIDDEN, "InvalidStateTransition", "this execution environment has been reset"
            )

    def _next(self, generation: int, connected: Callable[[], bool]) -> _Pending:
        with self._cond:
            self._check_generation(generation)
            if not self._polling:
                self._polling = True
                self._cond.notify_all()
            while True:
                self._check_generation(generation)
                pending = self._pending
                if pending is not None and pending.picked_up_at is None and pending.done is None:
                    if not connected():
                        raise _RefusalError(HTTPStatus.BAD_REQUEST, "ConnectionClosed", "the runtime went away")
                    pending.picked_up_at = time.monotonic()
                    pending.deadline_ms = int(time.time() * 1000 + pending.timeout_s * 1000)
                    pending.cold = self._dispatched == 0
                    self._dispatched += 1
                    self._cond.notify_all()
                    return pending
                self._cond.wait()

    def _in_flight(self, generation: int, request_id: str) -> _Pending:
        self._check_generation(generation)
        pending = self._pending
        if (
            pending is None
            or pending.request_id != request_id
            or pending.picked_up_at is None
            or pending.done is not None
        ):
            raise _RefusalError(*_INVALID_REQUEST_ID)
        return pending

    def _response(self, generation: int, request_id: str, body: bytes, size: int, content_type: str | None) -> None:
        with self._cond:
            pending = self._in_flight(generation, request_id)
            if size > MAX_RESPONSE_BYTES:
                message = (
                    f"Response payload size ({size} bytes) exceeded maximum allowed payload size "
                    f"({MAX_RESPONSE_BYTES} bytes)."
                )
                pending.fail(ErrorReport(ERROR_RESPONSE_TOO_LARGE, message))
                self._cond.notify_all()
                raise _RefusalError(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    "RequestEntityTooLarge",
                    f"Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes).",
                )
            pending.finish(_decode(body), None, body, content_type)
            self._cond.notify_all()

    def _error(self, generation: int, request_id: str, body: bytes, header_type: str | None) -> None:
        with self._cond:
            pending = self._in_flight(generation, request_id)
            error, document = _parse_error(body, header_type)
            pending.fail(error, document, body)
            self._cond.notify_all()

    def _post_init_error(self, generation: int, body: bytes, header_type: str | None) -> None:
        with self._cond:
            self._check_generation(generation)
            self._init_error, self._init_document = _parse_error(body, header_type)
            if self._pending is not None and self._pending.done is None:
                self._fail_if_broken(self._pending)
            self._cond.notify_all()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[_Handler], api: RuntimeAPI) -> None:
        self.api = api
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("runtime API connection from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as libcurl in awslambdaric expects
    disable_nagle_algorithm = True
    server_version = "LocalRuntimeAPI"

    @property
    def api(self) -> RuntimeAPI:
        return cast(_Server, self.server).api

    def setup(self) -> None:
        super().setup()
        self.generation = self.api._connect(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.api._disconnect(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("runtime API %s: " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        try:
            if self.headers.get("Content-Length") or self.headers.get("Transfer-Encoding"):
                self._read_body(0)  # a body on a GET is dropped, so that the connection stays in step
            if path == _INIT_ERROR or _INVOCATION.match(path):
                raise _method_not_allowed()
            if path != _NEXT:
                raise _not_found()
            pending = self.api._next(self.generation, self._peer_connected)
        except _RefusalError as refused:
            self._refuse(refused)
            return
        log.debug("invocation %s handed to the runtime", pending.request_id)
        self._send(HTTPStatus.OK, pending.body, pending.headers())

    def _peer_connected(self) -> bool:
        """False once the runtime has closed its end (its process is gone): nothing is handed to it then."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return not readable or self.connection.recv(1, socket.MSG_PEEK) != b""
        except OSError:
            return False

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        match = _INVOCATION.match(path)
        try:
            body, size = self._read_body(MAX_RESPONSE_BYTES)  # read first: the connection stays in step
            if path == _NEXT:
                raise _method_not_allowed()
            if path != _INIT_ERROR and match is None:
                raise _not_found()
            header_type = self.headers.get(ERROR_TYPE_HEADER)
            if match is None:
                self.api._post_init_error(self.generation, body, header_type)
            elif match["kind"] == "response":
                rid = unquote(match["id"])
                self.api._response(self.generation, rid, body, size, self.headers.get("Content-Type"))
            else:
                self.api._error(self.generation, unquote(match["id"]), body, header_type)
        except _RefusalError as refused:
            self._refuse(refused)
            return
        self._send_json(HTTPStatus.ACCEPTED, {"status": "OK"})

    def _read_body(self, limit: int) -> tuple[bytes, int]:
        """The body's first `limit` bytes (plus one, to tell it was over) and its full size; the rest is
        read and dropped so that the keep-alive connection stays in step."""
        kept = bytearray()
        total = 0

        def take(n: int) -> None:
            nonlocal total
            while n > 0:
                chunk = self.rfile.read(min(n, _CHUNK))
                if not chunk:
                    raise ConnectionError("the runtime closed the connection mid-body")
                n -= len(chunk)
                total += len(chunk)
                room = limit + 1 - len(kept)
                if room > 0:
                    kept.extend(chunk[:room])

        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self.rfile.readline(_LINE)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    self.close_connection = True
                    raise _RefusalError(HTTPStatus.BAD_REQUEST, "InvalidRequest", "malformed chunked body") from None
                if size == 0:
                    while self.rfile.readline(_LINE) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                take(size)
                self.rfile.readline(_LINE)
        else:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                self.close_connection = True
                raise _RefusalError(HTTPStatus.BAD_REQUEST, "InvalidRequest", "invalid Content-Length") from None
            take(length)
        return bytes(kept), total

    def _refuse(self, refused: _RefusalError) -> None:
        log.debug("runtime API refused %s %s: %s", self.command, self.path, refused.message)
        self._send_json(refused.status, {"errorMessage": refused.message, "errorType": refused.error_type})

    def _send_json(self, status: HTTPStatus, doc: dict[str, Any]) -> None:
        self._send(status, json.dumps(doc).encode(), {"Content-Type": "application/json"})

    def _send(self, status: HTTPStatus, body: bytes, headers: Mapping[str, str]) -> None:
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            if status == HTTPStatus.METHOD_NOT_ALLOWED:
                self.send_header("Allow", "GET" if urlsplit(self.path).path == _NEXT else "POST")
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            log.debug("runtime API could not answer %s %s", self.command, self.path, exc_info=True)
            self.close_connection = True


def _not_found() -> _RefusalError:
    return _RefusalError(HTTPStatus.NOT_FOUND, "NotFound", "no such Runtime API resource")


def _method_not_allowed() -> _RefusalError:
    return _RefusalError(HTTPStatus.METHOD_NOT_ALLOWED, "MethodNotAllowed", "method not allowed on this resource")


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body


def _parse_error(body: bytes, header_type: str | None) -> tuple[ErrorReport, Any]:
    """The runtime's error body (`errorMessage`, `errorType`, `stackTrace`) as an error and the document
    Lambda's Invoke returns for it; a body that is not such JSON is kept as its text."""
    doc = _decode(body)
    if not isinstance(doc, dict):
        text = body.decode("utf-8", "replace")
        error = ErrorReport(header_type or ERROR_UNHANDLED, text)
        return error, error.document()
    trace = doc.get("stackTrace")
    if isinstance(trace, list):
        stack = tuple(str(line) for line in trace)
    elif isinstance(trace, str):
        stack = (trace,)
    else:
        stack = ()
    error_type = doc.get("errorType") or header_type or ERROR_UNHANDLED
    return ErrorReport(str(error_type), str(doc.get("errorMessage", "")), stack), doc


def _new_trace_id() -> str:
    """An X-Ray tracing header as Lambda passes it (`Root=1-<epoch hex>-<96 bits>;Parent=...;Sampled=0`)."""
    return f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
