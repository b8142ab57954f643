"""The local Lambda Runtime API against AWS's own runtime interface client (awslambdaric) on the host.

Each runtime is a process started the way the Lambda base image's bootstrap starts it: `python -m awslambdaric
<handler>` in `LAMBDA_TASK_ROOT` (so the task root is first on `sys.path`), the Runtime API's
address in `AWS_LAMBDA_RUNTIME_API` and the function's settings in Lambda's variables. The protocol tests at the
end play the runtime by hand with http.client to pin status codes and bodies.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from servingkit.localcloud.emulator import LOCALHOST
from servingkit.localcloud.runtime_api import (
    ERROR_RESPONSE_TOO_LARGE,
    ERROR_RUNTIME_EXIT,
    ERROR_TIMEOUT,
    MAX_RESPONSE_BYTES,
    Invocation,
    RuntimeAPI,
    RuntimeAPIClosedError,
)

ARN = "arn:aws:lambda:us-east-1:123456789012:function:scorer"
FUNCTION_NAME = "scorer"
NEXT = "/2018-06-01/runtime/invocation/next"

FUNCTIONS = textwrap.dedent(
    """
    import os
    import time


    def describe(event, context):
        return {
            "event": event,
            "request_id": context.aws_request_id,
            "function_arn": context.invoked_function_arn,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "function_name": context.function_name,
            "memory_mb": context.memory_limit_in_mb,
            "trace_id": os.environ.get("_X_AMZN_TRACE_ID"),
            "client_custom": context.client_context.custom if context.client_context else None,
            "cognito_id": context.identity.cognito_identity_id,
            "pid": os.getpid(),
        }


    def maybe_fail(event, context):
        if event.get("fail"):
            raise ValueError(f"record {event['n']} is poison")
        return {"n": event["n"], "pid": os.getpid()}


    def slow(event, context):
        time.sleep(event["sleep_s"])
        return {"slept": event["sleep_s"]}


    def sized(event, context):
        return "x" * event["size"]
    """
)


@pytest.fixture
def api() -> Iterator[RuntimeAPI]:
    with RuntimeAPI() as server:
        yield server


@pytest.fixture
def task_root(tmp_path: Path) -> Path:
    root = tmp_path / "task"
    root.mkdir()
    (root / "functions.py").write_text(FUNCTIONS)
    (root / "broken_import.py").write_text("import nonexistent_dependency\n\ndef handler(event, context):\n    pass\n")
    (root / "raises_at_import.py").write_text("raise RuntimeError('model file missing')\n")
    return root


Start = Callable[[str], subprocess.Popen[bytes]]


@pytest.fixture
def start_runtime(api: RuntimeAPI, task_root: Path, tmp_path: Path) -> Iterator[Start]:
    """Start awslambdaric for a handler against `api`; every process started is killed (by its pid) at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(handler: str) -> subprocess.Popen[bytes]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "en_US.UTF-8",
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "_HANDLER": handler,
            "LAMBDA_TASK_ROOT": str(task_root),
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
            "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{FUNCTION_NAME}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]0123456789abcdef",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
        }
        log = (tmp_path / f"runtime-{len(procs)}.log").open("wb")
        proc = subprocess.Popen(
            # As the base image's bootstrap: `python -m awslambdaric <handler>` in the task root (first on sys.path).
            [sys.executable, "-m", "awslambdaric", handler],
            env=env,
            cwd=task_root,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


def invoke(api: RuntimeAPI, event: dict[str, Any], timeout_s: float = 3.0, **kwargs: Any) -> Invocation:
    return api.invoke(event, timeout_s=timeout_s, function_arn=ARN, **kwargs)


def test_handler_sees_lambda_context_and_returns_json(api: RuntimeAPI, start_runtime: Start) -> None:
    proc = start_runtime("functions.describe")
    inv = invoke(
        api,
        {"ride_id": "r-1"},
        timeout_s=3.0,
        request_id="8476a536-e9f4-11e8-9739-2dfe598c3fcd",
        trace_id="Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1",
        client_context={"custom": {"tenant": "t-1"}, "env": {}, "client": {}},
        cognito_identity={"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"},
    )

    assert inv.ok, inv.error
    assert inv.request_id == "8476a536-e9f4-11e8-9739-2dfe598c3fcd"
    out = inv.payload
    assert out["event"] == {"ride_id": "r-1"}
    assert out["request_id"] == inv.request_id
    assert out["function_arn"] == ARN
    assert 2_000 < out["remaining_ms"] <= 3_000  # from Lambda-Runtime-Deadline-Ms
    assert (out["function_name"], out["memory_mb"]) == (FUNCTION_NAME, "1024")
    assert out["trace_id"].startswith("Root=1-5bef4de7-")
    assert out["client_custom"] == {"tenant": "t-1"}
    assert out["cognito_id"] == "id-1"
    assert out["pid"] == proc.pid
    assert inv.content_type == "application/json"
    assert json.loads(inv.raw_payload) == out
    assert inv.cold
    assert inv.timings.queue_s is not None and inv.timings.run_s is not None
    assert 0 <= inv.timings.run_s <= inv.timings.total_s


def test_handler_error_comes_back_and_the_runtime_keeps_serving(api: RuntimeAPI, start_runtime: Start) -> None:
    proc = start_runtime("functions.maybe_fail")

    failed = invoke(api, {"n": 1, "fail": True})
    assert failed.error is not None
    assert failed.error.type == "ValueError"
    assert failed.error.message == "record 1 is poison"
    assert any("functions.py" in line and "maybe_fail" in line for line in failed.error.stack_trace)
    assert failed.payload["errorType"] == "ValueError"  # the document Lambda's Invoke returns
    assert failed.payload["requestId"] == failed.request_id

    served = invoke(api, {"n": 2})
    assert served.ok, served.error
    assert served.payload == {"n": 2, "pid": proc.pid}
    assert (failed.cold, served.cold) == (True, False)
    assert proc.poll() is None


@pytest.mark.parametrize(
    ("handler", "error_type", "message"),
    [
        (
            "broken_import.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'broken_import': No module named 'nonexistent_dependency'",
        ),
        ("raises_at_import.handler", "RuntimeError", "model file missing"),
    ],
)
def test_init_error_reaches_the_caller(
    api: RuntimeAPI, start_runtime: Start, handler: str, error_type: str, message: str
) -> None:
    proc = start_runtime(handler)
    inv = invoke(api, {"n": 1})  # queued before the runtime's init ends

    assert inv.error is not None
    assert (inv.error.type, inv.error.message) == (error_type, message)
    assert inv.payload["errorType"] == error_type
    assert inv.timings.picked_up_at is None
    assert api.wait_for_init_error(1.0) == inv.error
    assert api.init_error == inv.error
    assert not api.wait_until_polling(5.0)  # answers at once: this environment will never poll
    assert proc.wait(timeout=10) == 1  # awslambdaric exits after posting /init/error

    again = invoke(api, {"n": 2})  # until reset(), every invocation ends with the init error
    assert again.error == inv.error
    assert again.timings.total_s < 0.5

    api.reset()
    assert api.init_error is None
    assert api.wait_for_init_error(0.05) is None


def test_timeout_is_reported_and_a_fresh_environment_serves_after_reset(api: RuntimeAPI, start_runtime: Start) -> None:
    stuck = start_runtime("functions.slow")
    assert api.wait_until_polling(10.0)

    started = time.monotonic()
    inv = invoke(api, {"sleep_s": 30}, timeout_s=0.3)
    assert time.monotonic() - started < 2.0
    assert inv.timed_out
    assert inv.error is not None and inv.error.type == ERROR_TIMEOUT
    assert inv.error.message == f"RequestId: {inv.request_id} Error: Task timed out after 0.30 seconds"
    assert inv.timings.run_s is not None and 0.3 <= inv.timings.run_s < 1.5

    # Lambda discards the environment after a timeout: the caller kills the runtime, resets, starts a new one.
    stuck.kill()
    stuck.wait(timeout=10)
    api.reset()
    start_runtime("functions.slow")
    fresh = invoke(api, {"sleep_s": 0})
    assert fresh.ok, fresh.error
    assert fresh.payload == {"slept": 0}
    assert fresh.cold


def test_warm_invocations_and_cold_start_timing(api: RuntimeAPI, start_runtime: Start) -> None:
    start_runtime("functions.maybe_fail")
    invocations = [invoke(api, {"n": n}) for n in range(5)]  # the first waits for the runtime's init

    assert all(inv.ok for inv in invocations)
    assert [inv.payload["n"] for inv in invocations] == list(range(5))
    assert len({inv.payload["pid"] for inv in invocations}) == 1
    assert len({inv.request_id for inv in invocations}) == 5
    assert [inv.cold for inv in invocations] == [True, False, False, False, False]
    assert api.polling and api.wait_until_polling(0)
    cold_wait = invocations[0].timings.queue_s
    warm_waits = [inv.timings.queue_s for inv in invocations[1:]]
    assert cold_wait is not None and all(w is not None for w in warm_waits)
    assert cold_wait > max(w for w in warm_waits if w is not None)


def test_concurrent_callers_are_served_one_at_a_time(api: RuntimeAPI, start_runtime: Start) -> None:
    start_runtime("functions.slow")
    assert api.wait_until_polling(10.0)
    with ThreadPoolExecutor(max_workers=4) as pool:
        invocations = list(pool.map(lambda n: invoke(api, {"sleep_s": 0.05, "n": n}), range(4)))

    assert all(inv.ok for inv in invocations)
    spans = sorted((inv.timings.picked_up_at or 0.0, inv.timings.done_at) for inv in invocations)
    for (_, done), (next_start, _) in itertools.pairwise(spans):
        assert done <= next_start


def test_response_over_6_mb_is_a_function_error(api: RuntimeAPI, start_runtime: Start) -> None:
    proc = start_runtime("functions.sized")
    under = invoke(api, {"size": 6 * 1024 * 1024})  # 6 MiB of JSON string + quotes: within 6 MiB + 100 bytes
    assert under.ok, under.error
    assert len(under.payload) == 6 * 1024 * 1024

    over = invoke(api, {"size": 7 * 1024 * 1024})
    assert over.error is not None
    assert over.error.type == ERROR_RESPONSE_TOO_LARGE
    assert over.error.message == (
        f"Response payload size ({7 * 1024 * 1024 + 2} bytes) exceeded maximum allowed payload size "
        f"({MAX_RESPONSE_BYTES} bytes)."
    )

    # awslambdaric treats the 413 as fatal and exits, as it does on Lambda; the caller reports the exit.
    exit_code = proc.wait(timeout=10)
    assert exit_code == 1
    api.report_runtime_exit(exit_code)
    after = invoke(api, {"size": 1})
    assert after.error is not None and after.error.type == ERROR_RUNTIME_EXIT
    assert after.error.message == "Runtime exited with error: exit status 1"
    assert after.timings.total_s < 0.5


# ----- the protocol, played by hand -----


def _request(
    conn: http.client.HTTPConnection, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn.request(method, path, body=body, headers=headers or {}, encode_chunked=not isinstance(body, bytes | None))
    resp = conn.getresponse()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def test_protocol_status_codes_and_bodies(api: RuntimeAPI) -> None:
    conn = http.client.HTTPConnection(api.address, timeout=5)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(invoke, api, {"a": 1}, 2.0, request_id="req-1")
        status, headers, body = _request(conn, "GET", NEXT)
        assert status == 200
        assert json.loads(body) == {"a": 1}
        assert headers["lambda-runtime-aws-request-id"] == "req-1"
        assert headers["lambda-runtime-invoked-function-arn"] == ARN
        assert headers["lambda-runtime-trace-id"].startswith("Root=1-")
        assert 1_000 < int(headers["lambda-runtime-deadline-ms"]) - time.time() * 1000 <= 2_000
        assert headers["content-type"] == "application/json"
        assert "lambda-runtime-client-context" not in headers
        assert "lambda-runtime-cognito-identity" not in headers
        sock = conn.sock

        status, _, body = _request(conn, "POST", "/2018-06-01/runtime/invocation/req-1/response", b'{"ok": true}')
        assert (status, json.loads(body)) == (202, {"status": "OK"})
        assert pending.result(timeout=5).payload == {"ok": True}

    assert conn.sock is sock  # one keep-alive connection throughout
    invalid = {"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"}
    for path in ("/2018-06-01/runtime/invocation/req-1/response", "/2018-06-01/runtime/invocation/nope/error"):
        status, headers, body = _request(conn, "POST", path, b"{}")
        assert (status, json.loads(body)) == (400, invalid)
        assert headers["content-type"] == "application/json"
    assert _request(conn, "GET", "/2018-06-01/runtime/nothing")[0] == 404
    assert _request(conn, "POST", "/2018-06-01/runtime/invocation/req-1/everything", b"{}")[0] == 404
    assert _request(conn, "POST", NEXT, b"{}")[0] == 405
    assert conn.sock is sock
    conn.close()


def test_protocol_error_with_header_type_and_chunked_bodies(api: RuntimeAPI) -> None:
    conn = http.client.HTTPConnection(api.address, timeout=5)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(invoke, api, {"a": 1}, 2.0, request_id="req-1")
        assert _request(conn, "GET", NEXT)[0] == 200
        path = "/2018-06-01/runtime/invocation/req-1/error"
        status, _, _ = _request(conn, "POST", path, b"not json", {"Lambda-Runtime-Function-Error-Type": "Custom.Err"})
        assert status == 202
        failed = pending.result(timeout=5)
        assert failed.error is not None and (failed.error.type, failed.error.message) == ("Custom.Err", "not json")
        assert failed.raw_payload == b"not json"

        pending = pool.submit(invoke, api, {"a": 2}, 2.0, request_id="req-2")
        assert _request(conn, "GET", NEXT)[0] == 200
        path = "/2018-06-01/runtime/invocation/req-2/response"
        assert _request(conn, "POST", path, iter([b'{"chun', b'ked": [1, 2]}']))[0] == 202
        assert pending.result(timeout=5).payload == {"chunked": [1, 2]}

        pending = pool.submit(invoke, api, {"a": 3}, 2.0, request_id="req-3")
        assert _request(conn, "GET", NEXT)[0] == 200
        assert _request(conn, "POST", "/2018-06-01/runtime/invocation/req-3/response", b"\xffraw")[0] == 202
        assert pending.result(timeout=5).payload == b"\xffraw"  # not JSON: the bytes as posted
    conn.close()


def test_reset_refuses_the_previous_runtime(api: RuntimeAPI) -> None:
    old = http.client.HTTPConnection(api.address, timeout=5)
    with ThreadPoolExecutor(max_workers=2) as pool:
        polling = pool.submit(_request, old, "GET", NEXT)
        assert api.wait_until_polling(5.0)
        api.reset()
        status, _, body = polling.result(timeout=5)
        assert status == 403 and json.loads(body)["errorType"] == "InvalidStateTransition"
        assert not api.polling

        new = http.client.HTTPConnection(api.address, timeout=5)
        pending = pool.submit(invoke, api, {"a": 1}, 2.0, request_id="req-1")
        status, headers, _ = _request(new, "GET", NEXT)
        assert status == 200 and headers["lambda-runtime-aws-request-id"] == "req-1"
        assert _request(old, "POST", "/2018-06-01/runtime/invocation/req-1/response", b"1")[0] == 403
        assert _request(new, "POST", "/2018-06-01/runtime/invocation/req-1/response", b"1")[0] == 202
        assert pending.result(timeout=5).payload == 1
    old.close()
    new.close()


def test_a_runtime_gone_while_polling_gets_no_invocation(api: RuntimeAPI) -> None:
    gone = socket.create_connection((LOCALHOST, api.port))
    gone.sendall(f"GET {NEXT} HTTP/1.1\r\nHost: {api.address}\r\n\r\n".encode())
    assert api.wait_until_polling(5.0)
    gone.close()  # the process died while its GET /next was waiting

    conn = http.client.HTTPConnection(api.address, timeout=5)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(invoke, api, {"a": 1}, 2.0, request_id="req-1")
        status, headers, _ = _request(conn, "GET", NEXT)
        assert status == 200 and headers["lambda-runtime-aws-request-id"] == "req-1"
        assert _request(conn, "POST", "/2018-06-01/runtime/invocation/req-1/response", b"{}")[0] == 202
        assert pending.result(timeout=5).ok
    conn.close()


def test_pickup_timeout_and_close_end_the_waits() -> None:
    api = RuntimeAPI()
    try:
        inv = api.invoke({"a": 1}, timeout_s=1.0, function_arn=ARN, pickup_timeout_s=0.1)
        assert inv.timed_out and inv.timings.picked_up_at is None
        assert inv.error is not None and "did not take the invocation within 0.10 seconds" in inv.error.message
        assert not api.wait_until_polling(0.05)

        conn = http.client.HTTPConnection(api.address, timeout=5)
        with ThreadPoolExecutor(max_workers=1) as pool:
            waiting = pool.submit(api.invoke, {"a": 2}, timeout_s=30.0, function_arn=ARN)
            assert _request(conn, "GET", NEXT)[0] == 200  # in flight: the caller now waits for the answer
            started = time.monotonic()
            api.close()
            with pytest.raises(RuntimeAPIClosedError):
                waiting.result(timeout=5)
            assert time.monotonic() - started < 2.0
        conn.close()
    finally:
        api.close()
    with pytest.raises(RuntimeAPIClosedError):
        api.invoke({"a": 3}, timeout_s=1.0, function_arn=ARN)
