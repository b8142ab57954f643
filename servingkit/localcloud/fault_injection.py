"""Faults injected for real: moto's server as a child process to stop, kill, pause or restart, and the demo
run against it while that happens (the e2e fault tests and `servingkit bench faults`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from servingkit.localcloud.emulator import LOCALHOST, free_port


@dataclass
class MotoProcess:
    """moto's server as a child process on 127.0.0.1: stop (SIGTERM), kill (SIGKILL), pause/resume
    (SIGSTOP/SIGCONT) and restart (killed, then a fresh empty instance on the same port)."""

    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> MotoProcess:
        self.port = self.port or free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", LOCALHOST, "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.proc.returncode} on port {self.port}")
            try:
                with socket.create_connection((LOCALHOST, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"moto server did not listen on port {self.port} within {timeout_s:.0f} s")

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)
        self._wait()

    def kill(self) -> None:
        self._signal(signal.SIGCONT)
        self._signal(signal.SIGKILL)
        self._wait()

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def restart(self) -> None:
        self.kill()
        self.start()

    def _wait(self) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> MotoProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


FAULTS = ("pause", "stop", "kill", "restart")
PHASES = ("producing", "reading back")


@dataclass
class FaultRun:
    """`servingkit demo` run against a moto server that got `fault` while the demo was `phase`."""

    fault: str
    phase: str
    returncode: int
    figures: dict[str, Any]
    lines: list[str]

    @property
    def tracebacks(self) -> int:
        return sum(1 for line in self.lines if line.startswith("Traceback"))


def run_demo_with_fault(
    fault: str,
    phase: str,
    *,
    records: int = 2_000,
    rate: float = 400.0,
    pause_s: float = 4.0,
    delay_s: float = 1.0,
    demo_args: tuple[str, ...] = (),
    timeout_s: float = 300.0,
    root: Any = None,
) -> FaultRun:
    """Start moto as a child process, run the demo against it, inject `fault` `delay_s` after the demo says
    it is `phase`, and return its exit status, its last-line JSON figures and everything it printed."""
    import json
    import threading
    from pathlib import Path

    if fault not in FAULTS or phase not in PHASES:
        raise ValueError(f"fault must be one of {FAULTS} and phase one of {PHASES}")
    root = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    with MotoProcess() as moto:
        cmd = [sys.executable, "-m", "servingkit", "demo", "--endpoint-url", moto.endpoint_url]
        cmd += ["--records", str(records), "--rate", str(rate), "--no-progress", *demo_args]
        env = {
            **os.environ,
            "PYTHONPATH": str(root),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "POWERTOOLS_LOG_LEVEL": "ERROR",
        }
        proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        lines: list[str] = []
        assert proc.stdout is not None
        out = proc.stdout
        reader = threading.Thread(target=lambda: lines.extend(iter(out.readline, "")), daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout_s
        try:
            while not any(line.startswith(f"{phase} ") for line in list(lines)):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the demo never reached {phase!r}:\n" + "".join(lines[-30:]))
                time.sleep(0.05)
            time.sleep(delay_s)
            if fault == "pause":
                moto.pause()
                time.sleep(pause_s)
                moto.resume()
            else:
                getattr(moto, fault)()
            proc.wait(max(1.0, deadline - time.monotonic()))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(10)
    last = next((line for line in reversed(lines) if line.startswith("{")), "{}")
    return FaultRun(fault, phase, proc.returncode, json.loads(last), [line.rstrip("\n") for line in lines])
