"""Starting, reusing and stopping LocalStack: nothing survives stop(), errors say what went wrong."""

from __future__ import annotations

import pytest

from servingkit.localcloud import localstack as ls
from servingkit.localcloud import processes


def _survivors(tree: dict[int, float]) -> list[int]:
    return processes.survivors(tree)


def test_a_second_instance_starts_healthy_and_stop_leaves_nothing_behind():
    instance = ls.launch(0, services=("s3", "kinesis", "sqs"))
    try:
        assert instance.running()
        states = ls.health(instance.endpoint)
        assert states is not None and states["kinesis"] == "running" and states["s3"] == "available"
        assert instance.timings["gateway_s"] <= instance.start_seconds
        assert instance.instance_dir.is_dir()
        tree = processes.process_tree(instance.pid)
        assert len(tree) >= 2  # the gateway and kinesis-mock (node)
    finally:
        code = instance.stop()

    # LocalStack 2026.3.0 normally exits on TERM within ~2 s (0); about 1 stop in 20 its event loop
    # misses the stop and stop() KILLs it once its shutdown is done (-9). Either way nothing may remain.
    assert code in (0, -9), f"exit {code}; log:\n{instance.log_tail()}"
    assert _survivors(tree) == []  # kinesis-mock (node) went with the gateway
    assert ls.health(instance.endpoint, timeout=0.5) is None
    assert not instance.instance_dir.exists()
    assert instance.stop() == code  # idempotent: the same exit status again, nothing signalled twice


def test_a_kill_after_the_grace_period_does_not_orphan_kinesis_mock():
    instance = ls.launch(0, services=("kinesis",))
    tree = processes.process_tree(instance.pid)
    assert len(tree) >= 2
    code = instance.stop(grace_s=0)  # no time to shut down: KILL, then end what it spawned in its own session

    assert code == -9
    assert _survivors(tree) == []


def test_ensure_running_reuses_a_healthy_localstack_without_starting_another(localstack):
    assert ls.ensure_running(localstack.endpoint, services=("s3", "kinesis", "sqs")) == localstack.endpoint
    assert ls.current() is None


def test_starting_on_a_busy_port_says_so(localstack):
    port = int(localstack.endpoint.rsplit(":", 1)[1])
    with pytest.raises(ls.LocalStackError, match="already answers"):
        ls.launch(port)


def test_ensure_running_asks_for_services_the_running_one_does_not_offer(localstack):
    with pytest.raises(ls.LocalStackError, match="does not offer"):
        ls.ensure_running(localstack.endpoint, services=("s3", "dynamodb"))
