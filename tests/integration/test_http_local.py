"""The local HTTP server's own wire handling, over real sockets: bodies, HEAD, limits, malformed requests.

A stub handler stands in for the API (its answers are the API's business, tested elsewhere): what is
checked here is what the server does before and after the handler, as API Gateway would.
"""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest

from servingkit import http_local
from servingkit.http_local import serving

ANSWER = '{"predictions":[1.5]}'


@pytest.fixture
def events() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def base(events: list[dict[str, Any]]) -> Iterator[str]:
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        events.append(event)
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": ANSWER}

    with serving(handler) as url:
        yield url


def _address(base: str) -> tuple[str, int]:
    host, port = base.removeprefix("http://").split(":")
    return host, int(port)


def raw(base: str, request: bytes, *, shut: bool = False) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; read one answer (status, headers, body) until the server closes or is done."""
    with socket.create_connection(_address(base), timeout=10) as sock:
        sock.sendall(request)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def assert_kit_error(status: int, body: bytes, want_status: int, code: str) -> None:
    assert status == want_status
    doc = json.loads(body)
    assert doc["error"]["code"] == code and doc["error"]["message"] and doc["error"]["details"] == []
    assert doc["request_id"]


def test_chunked_body_reaches_the_handler_whole(base: str, events: list[dict[str, Any]]) -> None:
    body = json.dumps({"dataframe_records": [{"zone": "a", "distance": 1.0}] * 50}).encode()
    chunks = b"".join(
        b"%x;ext=1\r\n%s\r\n" % (len(body[i : i + 100]), body[i : i + 100]) for i in range(0, len(body), 100)
    )
    request = (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\nX-Trailer: 1\r\n\r\n"
    )
    status, _, answer = raw(base, request)
    assert status == 200 and answer.decode() == ANSWER
    assert events[-1]["body"] == body.decode()


def test_head_is_the_get_without_its_body_and_the_connection_stays_usable(
    base: str, events: list[dict[str, Any]]
) -> None:
    conn = http.client.HTTPConnection(*_address(base), timeout=10)
    conn.request("HEAD", "/health")
    head = conn.getresponse()
    assert head.status == 200 and head.read() == b""
    assert head.getheader("Content-Length") == str(len(ANSWER))
    assert events[-1]["httpMethod"] == "GET"
    conn.request("GET", "/health")  # the same connection: nothing of a body was left in it
    get = conn.getresponse()
    assert get.status == 200 and get.read().decode() == ANSWER
    conn.close()


@pytest.mark.parametrize("chunked", [False, True])
def test_body_over_api_gateways_limit_is_413_in_the_kits_shape(
    base: str, events: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, chunked: bool
) -> None:
    monkeypatch.setattr(http_local, "GATEWAY_MAX_BODY", 1000)  # read at call time; same path as 10 MiB
    body = b"x" * 1001
    framing = b"Transfer-Encoding: chunked\r\n\r\n3e9\r\n" + body + b"\r\n0\r\n\r\n"
    request = b"POST /invocations HTTP/1.1\r\nHost: x\r\n" + (
        framing if chunked else b"Content-Length: 1001\r\n\r\n" + body
    )
    status, headers, answer = raw(base, request)
    assert_kit_error(status, answer, 413, "payload_too_large")
    assert "1000 bytes" in json.loads(answer)["error"]["message"]
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert events == [], "the oversized body never reached the handler"


def test_the_default_limit_is_api_gateways_10_mib() -> None:
    assert http_local.GATEWAY_MAX_BODY == 10 * 1024 * 1024


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"POST /p HTTP/1.1\r\nContent-Length: ten\r\n\r\n", 400, "malformed_request"),
        (b"POST /p HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "malformed_request"),
        (b"POST /p HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, "malformed_request"),
        (
            b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
            400,
            "malformed_request",
        ),
        (b"POST /p HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "unsupported_transfer_encoding"),
        (b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "malformed_body"),
        (b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 5000 + b"\r\n", 400, "malformed_body"),
        (b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", 400, "malformed_body"),
        (b"POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", 400, "malformed_body"),
        (b"NOT A REQUEST LINE AT ALL\r\n\r\n", 400, "malformed_request"),
        (b"GET /p HTTP/9.9\r\n\r\n", 505, "http_version"),
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414, "uri_too_long"),
        (b"GET /p HTTP/1.1\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n", 431, "headers_too_large"),
    ],
    ids=lambda v: v[:40].decode(errors="replace") if isinstance(v, bytes) else str(v),
)
def test_malformed_requests_are_answered_in_the_kits_shape(
    base: str, events: list[dict[str, Any]], request_bytes: bytes, status: int, code: str
) -> None:
    got, headers, answer = raw(base, request_bytes, shut=True)
    assert_kit_error(got, answer, status, code)
    assert headers["content-type"] == "application/json"
    assert events == []


def test_a_body_that_stops_arriving_is_408_not_a_hang(
    events: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_local, "READ_TIMEOUT_S", 0.5)
    with serving(lambda e, c: {"statusCode": 200, "body": ""}) as url:
        started = time.monotonic()
        status, _, answer = raw(url, b"POST /p HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc")
    assert_kit_error(status, answer, 408, "request_timeout")
    assert time.monotonic() - started < 5


def test_keep_alive_requests_do_not_wait_on_delayed_acks(base: str) -> None:
    """The answer goes out in one write with TCP_NODELAY: headers then body as two small writes met the
    client's delayed ACK (Nagle), about 40 ms per request on a kept-alive connection (issue #16)."""
    conn = http.client.HTTPConnection(*_address(base), timeout=10)
    latencies = []
    for _ in range(31):
        started = time.perf_counter()
        conn.request("POST", "/invocations", b'{"instances": [[1]]}', {"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200 and response.read().decode() == ANSWER
        latencies.append(time.perf_counter() - started)
    conn.close()
    assert statistics.median(latencies) < 0.02, f"median {statistics.median(latencies) * 1000:.1f} ms"
