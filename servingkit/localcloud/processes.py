"""A started server's processes, through psutil: its tree, its listening sockets, and ending what it left.

Processes are named by pid and told apart from a later process with a reused pid by their start time
(`process_tree` maps each pid to it); zombies count as gone. Used to stop LocalStack with the children
it spawns in their own session (kinesis-mock), and to check that nothing listens beyond loopback.
"""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import time

import psutil

_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess)


def started_at(pid: int) -> float | None:
    """The start time of the live process `pid` (epoch seconds), or None if it is gone (or a zombie)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(process.create_time())
    except _GONE:
        return None


def process_tree(pid: int) -> dict[int, float]:
    """`pid` and all its descendants, each with its start time (to tell it from a reused pid later)."""
    try:
        members = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except _GONE:
        return {}
    tree: dict[int, float] = {}
    for member in members:
        start = started_at(member.pid)
        if start is not None:
            tree[member.pid] = start
    return tree


def survivors(tree: dict[int, float], *, besides: int | None = None) -> list[int]:
    """The processes of `tree` (from `process_tree`) still running, other than `besides`."""
    return [pid for pid, start in tree.items() if pid != besides and started_at(pid) == start]


def end_leftovers(tree: dict[int, float], root: int, grace_s: float = 5.0) -> None:
    """TERM, then KILL after `grace_s`, every process of `tree` but `root` that still runs."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = survivors(tree, besides=root)
        if not left:
            return
        for pid in left:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                psutil.Process(pid).send_signal(sig)
        deadline = time.monotonic() + grace_s
        while survivors(tree, besides=root) and time.monotonic() < deadline:
            time.sleep(0.1)


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """TCP listening (address, port) pairs of `pid` and its descendants."""
    found: list[tuple[str, int]] = []
    for member in process_tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            for conn in psutil.Process(member).net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr:
                    found.append((str(conn.laddr.ip), int(conn.laddr.port)))
    return found


def exposed_listeners(pid: int) -> list[tuple[str, int]]:
    """Listeners of `pid` and its descendants that are not on a loopback address (should be none)."""
    return [(h, p) for h, p in listening_sockets(pid) if not ipaddress.ip_address(h).is_loopback]
