"""servingkit.bench.util: the /proc tree walk that the memory sampler and the CPU of a live server both use."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from itertools import pairwise

import pytest

from servingkit.bench import measure
from servingkit.bench.util import descendants, tree_rss_kb

# A child that starts a grandchild, waits until the grandchild has spent 0.05 s of CPU, prints its pid, and both
# sleep until the test stops them.
GRANDCHILD = (
    "import time\n"
    "end = time.process_time() + 0.05\n"
    "while time.process_time() < end: pass\n"
    "print(flush=True)\n"
    "time.sleep(60)\n"
)
TREE = (
    "import subprocess, sys, time\n"
    f"g = subprocess.Popen([sys.executable, '-c', {GRANDCHILD!r}], stdout=subprocess.PIPE)\n"
    "g.stdout.readline()\n"
    "print(g.pid, flush=True)\n"
    "time.sleep(60)\n"
)
NO_SUCH_PID = 2**22 + 12345  # above Linux's pid_max ceiling: never a live process


@pytest.fixture
def tree() -> Iterator[tuple[int, int]]:
    """(child pid, grandchild pid) of a live two-level process tree, stopped by pid afterwards."""
    child = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    grandchild = int(child.stdout.readline())
    try:
        yield child.pid, grandchild
    finally:
        os.kill(grandchild, 9)
        child.kill()
        child.wait()
        child.stdout.close()


def test_descendants_walks_the_tree_parent_first_each_once(tree: tuple[int, int]) -> None:
    child, grandchild = tree
    assert list(descendants(child)) == [child, grandchild]
    assert list(descendants(grandchild)) == [grandchild]
    mine = list(descendants(os.getpid()))
    assert mine[0] == os.getpid() and {child, grandchild} <= set(mine)
    assert len(mine) == len(set(mine))
    assert mine.index(child) < mine.index(grandchild)


def test_a_pid_that_is_not_running_has_no_tree() -> None:
    assert list(descendants(NO_SUCH_PID)) == []
    assert tree_rss_kb(NO_SUCH_PID) == 0
    assert measure.tree_cpu_seconds(NO_SUCH_PID) == 0.0


def test_memory_and_cpu_of_a_tree_sum_its_processes(tree: tuple[int, int]) -> None:
    child, grandchild = tree
    # Two live interpreters: the tree holds both, so more than the grandchild alone (which spun 0.05 s of CPU).
    assert tree_rss_kb(child) > tree_rss_kb(grandchild) > 0
    assert measure.tree_cpu_seconds(child) > measure.tree_cpu_seconds(grandchild) >= 0.04


# A server-like process: it spends CPU on short-lived threads (one per request, as a threading HTTP server does),
# so threads keep appearing in and vanishing from /proc while the walk reads it.
CHURN = (
    "import threading, time\n"
    "def work():\n"
    "    end = time.process_time() + 0.0005\n"
    "    while time.process_time() < end: pass\n"
    "print(flush=True)\n"
    "while True:\n"
    "    ts = [threading.Thread(target=work) for _ in range(4)]\n"
    "    [t.start() for t in ts]\n"
    "    [t.join() for t in ts]\n"
)


def test_the_cpu_of_a_process_whose_threads_come_and_go_never_goes_back() -> None:
    # A thread exiting between the listing of /proc/PID/task and the read of its children file once dropped the
    # whole process from the walk: the server's CPU read as 0, and a request cost -329 ms of CPU.
    proc = subprocess.Popen([sys.executable, "-c", CHURN], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        readings = [measure.tree_cpu_seconds(proc.pid) for _ in range(3000)]
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
    assert min(readings) > 0
    assert all(b >= a for a, b in pairwise(readings)), "CPU went back"
