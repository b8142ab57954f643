"""A Docker engine of the kit's own: installed if absent, started on a private socket, stopped by process id.

The image tier and `--image` runs never rely on a daemon someone started by hand. This one has its own data
root (kept in `.docker/` between runs as a build cache, locked so two engines never share it), its own exec
root and unix socket, no iptables and no bridge (this machine has no bridge network: containers run with
`--network host`). `SERVINGKIT_DOCKER_HOST` points at an existing engine instead (e.g. one that can pull
AWS's real base image).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from servingkit.image.platform import ROOT

STATE = ROOT / ".docker"
HOST_ENV = "SERVINGKIT_DOCKER_HOST"
READY_TIMEOUT_S = 60.0


class EngineError(RuntimeError):
    """The engine could not be installed, started or used; the message says what to do."""


def ensure_packages(*packages: str, binaries: Sequence[str]) -> None:
    """Install Debian packages when a binary they provide is missing (the machine is Debian, we are root)."""
    if all(shutil.which(b) for b in binaries):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise EngineError(f"{', '.join(binaries)} not found: install {' '.join(packages)} (Debian: apt-get install)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    for cmd in (["apt-get", "update", "-qq"], install):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise EngineError(f"`{' '.join(cmd)}` exited with {done.returncode}: {done.stderr[-2000:]}")
    missing = [b for b in binaries if not shutil.which(b)]
    if missing:
        raise EngineError(f"installed {' '.join(packages)}, but {', '.join(missing)} is still not on PATH")


@dataclass
class DockerEngine:
    """A reachable engine (`host` is a DOCKER_HOST URL); `stop()` ends it if this object started it."""

    host: str
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _lock: IO[str] | None = None
    _scratch: list[Path] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    def docker(
        self, *args: str, check: bool = True, timeout: float = 600, capture: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run one docker CLI command against this engine; a failure raises with its output."""
        done = subprocess.run(
            ["docker", *args], env=self.env, capture_output=capture, text=True, timeout=timeout, input=stdin
        )
        if check and done.returncode != 0:
            shown = " ".join(args[:3])
            raise EngineError(f"`docker {shown} ...` exited with {done.returncode}: {(done.stderr or '')[-3000:]}")
        return done

    def image_exists(self, tag: str) -> bool:
        return self.docker("image", "inspect", tag, check=False).returncode == 0

    def stop(self, timeout: float = 30.0) -> None:
        """TERM the daemon (it stops its containers and containerd), KILL its group if it lingers."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # containerd-shims left behind by a killed daemon
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        for path in self._scratch:
            shutil.rmtree(path, ignore_errors=True)
        self._scratch.clear()

    def __enter__(self) -> DockerEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_ready(engine: DockerEngine, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EngineError(f"dockerd exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if engine.docker("version", "--format", "{{.Server.Version}}", check=False, timeout=10).returncode == 0:
            return
        time.sleep(0.2)
    raise EngineError(f"dockerd did not answer within {READY_TIMEOUT_S:.0f} s:\n{log.read_text()[-3000:]}")


def _data_root(state: Path) -> tuple[Path, IO[str] | None, Path | None]:
    """The cached data root if no other engine of ours holds it, else a throw-away one."""
    state.mkdir(parents=True, exist_ok=True)
    lock = (state / "data.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        scratch = Path(tempfile.mkdtemp(prefix="data-", dir=state))
        return scratch, None, scratch
    return state / "data", lock, None


def start_engine(state: Path = STATE) -> DockerEngine:
    """Start a private dockerd (or attach to $SERVINGKIT_DOCKER_HOST) and wait until it answers."""
    if os.environ.get(HOST_ENV):
        engine = DockerEngine(host=os.environ[HOST_ENV])
        if engine.docker("version", check=False, timeout=10).returncode != 0:
            raise EngineError(f"{HOST_ENV}={engine.host}: no Docker engine answers there")
        return engine
    ensure_packages("docker.io", binaries=("dockerd", "docker"))
    data_root, lock, scratch = _data_root(state)
    # Unix socket paths are limited to 108 bytes: the exec root and socket live in a short temp folder.
    run_dir = Path(tempfile.mkdtemp(prefix="sk-docker-"))
    log = state / f"dockerd-{os.getpid()}.log"
    cmd = [
        "dockerd",
        f"--data-root={data_root}",
        f"--exec-root={run_dir / 'exec'}",
        f"--pidfile={run_dir / 'dockerd.pid'}",
        f"--host=unix://{run_dir / 'docker.sock'}",
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    engine = DockerEngine(host=f"unix://{run_dir / 'docker.sock'}", process=proc, log_path=log, _lock=lock)
    engine._scratch += [run_dir, *([scratch] if scratch else [])]
    try:
        _wait_ready(engine, proc, log)
    except BaseException:
        engine.stop()
        raise
    return engine


@contextlib.contextmanager
def running_engine(state: Path = STATE) -> Iterator[DockerEngine]:
    engine = start_engine(state)
    try:
        yield engine
    finally:
        engine.stop()
