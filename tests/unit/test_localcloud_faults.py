"""Emulator faults in the local cloud, without an emulator: the one classification, a producer that keeps
what was acknowledged, a collector that stops waiting for a dead emulator, and a shutdown that never
replaces the error that ended the run."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from servingkit.localcloud.cloud import LocalCloud
from servingkit.localcloud.collector import Collector
from servingkit.localcloud.faults import EmulatorFaultError, emulator_fault
from servingkit.localcloud.traffic import Unit, produce


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "x"}}, "GetRecords")


@pytest.mark.parametrize(
    ("exc", "lost_state"),
    [
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), False),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), False),
        (_client_error("ResourceNotFoundException"), True),
        (_client_error("AWS.SimpleQueueService.NonExistentQueue"), True),
    ],
)
def test_emulator_faults_are_told_apart_in_one_line(exc: Exception, lost_state: bool) -> None:
    fault = emulator_fault(exc, "http://127.0.0.1:1")
    assert fault is not None and fault.lost_state is lost_state
    assert "http://127.0.0.1:1" in fault.reason and "\n" not in fault.reason


@pytest.mark.parametrize("exc", [ValueError("bug"), _client_error("ValidationException")])
def test_other_errors_are_not_emulator_faults(exc: Exception) -> None:
    assert emulator_fault(exc, None) is None


class DyingKinesis:
    """Acknowledges `alive` PutRecords calls, then the endpoint is gone."""

    def __init__(self, alive: int) -> None:
        self.alive = alive
        self.seq = 0

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        if self.alive <= 0:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
        self.alive -= 1
        out = []
        for _ in Records:
            self.seq += 1
            out.append({"ShardId": "shardId-000000000000", "SequenceNumber": str(self.seq)})
        return {"Records": out}


def test_the_producer_keeps_what_was_acknowledged_when_the_emulator_dies() -> None:
    units = [Unit(b"{}", f"k{i}", ((f"r{i}", None),)) for i in range(1200)]
    ledger: dict[Any, Any] = {}
    with pytest.raises(EndpointConnectionError):
        produce(DyingKinesis(alive=2), "in", units, ledger=ledger, down_grace_s=0.2)
    assert len(ledger) == 1000  # two chunks of 500 acknowledged before it died


def test_the_producer_rides_out_a_pause_shorter_than_the_grace() -> None:
    class Paused(DyingKinesis):
        def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls == 2:
                raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
            self.alive = 1
            return super().put_records(StreamName, Records)

    units = [Unit(b"{}", f"k{i}", ((f"r{i}", None),)) for i in range(1200)]
    assert len(produce(Paused(alive=1), "in", units, down_grace_s=5)) == 1200


def _collector(expected: int) -> Collector:
    collector = Collector({"kinesis": None, "sqs": None}, resources=None)  # type: ignore[arg-type]
    collector.expect({("s", str(i), None): (f"r{i}", None) for i in range(expected)})
    return collector


def test_the_collector_stops_at_once_for_an_emulator_that_restarted_empty() -> None:
    gone = EmulatorFaultError("the emulator answers without the stack's resources", lost_state=True)
    reason = _collector(3).wait(60, health=lambda: gone)
    assert reason is not None and reason.startswith("the emulator answers without") and "reading back" in reason


def test_the_collector_waits_out_the_grace_for_a_silent_emulator_then_says_so() -> None:
    down = EmulatorFaultError("the emulator at x stopped answering", lost_state=False)
    reason = _collector(3).wait(60, health=lambda: down, down_grace_s=1.5)
    assert reason == "the emulator at x stopped answering for 2 s, while reading back"
    assert _collector(3).wait(0.3) == "timed out after 0 s with 3 records unaccounted for"


def test_a_shutdown_failure_never_replaces_the_error_that_ended_the_run() -> None:
    cloud = object.__new__(LocalCloud)
    cloud.notes, cloud.last_stopped, cloud._stack = [], None, ExitStack()

    def stuck() -> None:
        raise TimeoutError("poller threads still running after 30 s")

    cloud._stack.callback(stuck)
    original = KeyError("the original")
    cloud.__exit__(KeyError, original, None)  # returns: the original keeps propagating from the with block
    assert cloud.notes == ["while shutting down: TimeoutError: poller threads still running after 30 s"]


def test_a_shutdown_failure_after_a_clean_run_is_raised() -> None:
    cloud = object.__new__(LocalCloud)
    cloud.notes, cloud.last_stopped, cloud._stack = [], None, ExitStack()
    cloud._stack.callback(lambda: (_ for _ in ()).throw(TimeoutError("stuck")))
    with pytest.raises(TimeoutError):
        cloud.__exit__(None, None, None)
