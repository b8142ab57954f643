"""The bounded wait the shadow and capture share: never past the deadline, the work's own outcome otherwise."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from lambda_fn.deadline import bounded_result


def test_a_finished_future_gives_its_result_even_past_the_deadline() -> None:
    done: Future[int] = Future()
    done.set_result(7)
    assert bounded_result(done, time.monotonic() - 10.0) == 7


def test_a_running_future_is_waited_for_until_the_deadline_only() -> None:
    release = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(release.wait, 10.0)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            bounded_result(future, started + 0.2)
        waited = time.monotonic() - started
        release.set()
        assert bounded_result(future, time.monotonic() + 5.0) is True  # the work went on and finished
    assert 0.15 <= waited < 2.0


def test_the_deadline_is_read_on_the_given_clock() -> None:
    release = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(release.wait, 10.0)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            bounded_result(future, 100.0, clock=lambda: 100.5)  # already past on that clock: no wait
        assert time.monotonic() - started < 1.0
        release.set()


def test_what_the_work_raised_is_raised() -> None:
    failed: Future[int] = Future()
    failed.set_exception(ValueError("boom"))
    with pytest.raises(ValueError, match="boom"):
        bounded_result(failed, time.monotonic() + 1.0)
