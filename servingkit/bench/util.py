"""Run a benchmark child process, time it, and sample its process tree's peak memory (Linux)."""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, NamedTuple


class Run(NamedTuple):
    returncode: int
    stdout: str
    stderr: str
    peak_kb: int  # largest summed VmRSS of the child and its descendants, sampled (0 when not sampled)
    seconds: float  # wall time from spawn to the child's exit
    rusage: resource.struct_rusage  # the child's own, from wait4 (ru_maxrss: its exact high-water mark, KiB)


def descendants(pid: int) -> Iterator[int]:
    """`pid` and every process below it, each once, a parent before its children (Linux /proc, read as the walk
    goes): the one tree walk behind the memory and the CPU a benchmark charges to a process tree. A process that
    has exited by the time the walk reaches it is left out, with what was below it; a pid that never was: nothing."""
    todo, seen = [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            tasks = list(Path(f"/proc/{p}/task").iterdir())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        yield p
        todo += _children(tasks)


def _children(tasks: list[Path]) -> list[int]:
    """The child pids recorded under each of a process's threads. A thread that exits between the listing and
    the read is skipped alone: dropping the whole process for it would drop the server's CPU from the tree
    (a benchmark once measured -329 ms of CPU per request that way)."""
    out: list[int] = []
    for task in tasks:
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
            continue
    return out


def tree_rss_kb(pid: int) -> int:
    """RSS of a process and all its descendants, in KiB (Linux /proc); 0 once it has exited."""
    total = 0
    for p in descendants(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text().splitlines()
            total += sum(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
        except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
            continue
    return total


def run_sampled(
    cmd: Sequence[str],
    env: Mapping[str, str] | None = None,
    *,
    cwd: str | Path | None = None,
    interval: float | None = 0.05,
) -> Run:
    """Run `cmd` to completion with stdout and stderr captured (drained as they come, so a chatty child
    cannot fill a pipe and block), sampling its tree's RSS every `interval` seconds (None: no sampling)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace"
    )
    captured: dict[str, str] = {}

    def drain(name: str, stream: IO[str]) -> None:
        with stream:
            captured[name] = stream.read()

    assert proc.stdout is not None and proc.stderr is not None
    threads = [
        threading.Thread(target=drain, args=("stdout", proc.stdout), daemon=True),
        threading.Thread(target=drain, args=("stderr", proc.stderr), daemon=True),
    ]
    peak = 0
    exited = threading.Event()

    def sample(every: float) -> None:
        nonlocal peak
        while not exited.is_set():
            peak = max(peak, tree_rss_kb(proc.pid))
            exited.wait(every)

    if interval is not None:
        threads.append(threading.Thread(target=sample, args=(interval,), daemon=True))
    for t in threads:
        t.start()
    # Wait for the exit without reaping: the pid stays ours (a zombie) until the sampler has stopped.
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    seconds = time.perf_counter() - started
    exited.set()
    for t in threads[2:]:
        t.join()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    # EOF once the child and any descendant still holding its stdout/stderr have closed them.
    for t in threads[:2]:
        t.join()
    return Run(proc.returncode, captured["stdout"], captured["stderr"], peak, seconds, usage)
