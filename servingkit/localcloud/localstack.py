"""LocalStack without Docker: install it in its own Python 3.13 venv, start it on 127.0.0.1, stop it.

LocalStack's host mode needs Python 3.13 and pinned dependencies that clash with the kit's, so it lives in a separate
venv under `.localstack/` (git-ignored), pinned by `localstack-constraints.txt`. Kinesis is served by
kinesis-mock (npm `kinesis-local`), whose `main.js` binds 0.0.0.0; `install()` patches it to bind
127.0.0.1 so nothing is reachable from the network. Lambda execution needs Docker there, which is why the
local poller (`servingkit.localcloud.poller`) invokes the handler itself.

Every failing step raises `LocalStackError` naming the exact command and the tail of its output.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from servingkit.localcloud.emulator import LOCALHOST, free_port
from servingkit.localcloud.processes import end_leftovers, exposed_listeners, listening_sockets, process_tree

VERSION = "2026.3.0"
#: Top-level pins; every transitive version is fixed by CONSTRAINTS (a `pip freeze` of a working install).
REQUIREMENTS = (f"localstack-core[runtime]=={VERSION}", "cbor2==5.9.0", "pyopenssl==25.3.0")
CONSTRAINTS = Path(__file__).with_name("localstack-constraints.txt")
PYTHON_VERSION = (3, 13)
DEFAULT_PORT = 4566
#: What the kit uses (S3, Kinesis, SQS, CloudWatch) plus API Gateway's control plane and STS for the CLI.
DEFAULT_SERVICES = ("s3", "kinesis", "sqs", "cloudwatch", "apigateway", "sts")
STOP_GRACE_S = 30.0
DEFAULT_HOME = Path(__file__).resolve().parents[2] / ".localstack"
HOME_ENV = "SERVINGKIT_LOCALSTACK_HOME"
PYTHON_ENV = "SERVINGKIT_LOCALSTACK_PYTHON"
_KINESIS_MOCK_JS = "usr/lib/localstack/kinesis-local/*/node_modules/kinesis-local/main.js"
_ANY_HOST = '"0.0.0.0"'
_LOOPBACK = f'"{LOCALHOST}"'
# Variables of the caller that must not leak into LocalStack's interpreter or its idea of AWS.
_DROPPED_ENV_PREFIXES = ("AWS_", "LOCALSTACK_", "PYTHON", "VIRTUAL_ENV", "GATEWAY_", "SERVICES", "EDGE_")

Log = Callable[[str], None]


class LocalStackError(RuntimeError):
    """LocalStack could not be installed, started, reached or stopped; the message says what to run."""


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class Layout:
    """Where LocalStack lives: its venv, its static files (kinesis-mock) and per-instance state."""

    home: Path

    @classmethod
    def default(cls) -> Layout:
        return cls(Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).resolve())

    @property
    def venv(self) -> Path:
        return self.home / "venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def filesystem_root(self) -> Path:
        return self.home / "fs"

    @property
    def stamp(self) -> Path:
        return self.home / "installed.json"

    def instance_dir(self, port: int) -> Path:
        return self.home / "run" / str(port)


# -- install -------------------------------------------------------------------------------------
def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _run(cmd: Sequence[str | Path], *, env: Mapping[str, str] | None = None, timeout: float = 900) -> str:
    """Run a command; on failure raise with the exact command line and the end of its output."""
    shown = " ".join(str(c) for c in cmd)
    try:
        done = subprocess.run(
            [str(c) for c in cmd],
            env=dict(env) if env is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise LocalStackError(f"`{shown}` failed: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise LocalStackError(f"`{shown}` did not finish within {timeout:.0f} s") from exc
    if done.returncode != 0:
        output = _tail(done.stdout + "\n" + done.stderr)
        raise LocalStackError(f"`{shown}` exited with {done.returncode}:\n{output}")
    return done.stdout


def _python_version(python: str) -> tuple[int, int] | None:
    try:
        out = _run([python, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"], timeout=30)
    except LocalStackError:
        return None
    major, minor = out.split()
    return int(major), int(minor)


def find_python() -> str:
    """A Python 3.13 interpreter: $SERVINGKIT_LOCALSTACK_PYTHON, `python3.13` on PATH, or pyenv's."""
    candidates: list[str] = []
    if os.environ.get(PYTHON_ENV):
        candidates.append(os.environ[PYTHON_ENV])
    if found := shutil.which("python3.13"):
        candidates.append(found)
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    if pyenv := shutil.which("pyenv"):
        with contextlib.suppress(LocalStackError):
            pyenv_root = _run([pyenv, "root"], timeout=30).strip() or pyenv_root
    candidates += [str(p) for p in sorted(Path(pyenv_root).glob("versions/3.13*/bin/python3.13"), reverse=True)]
    for python in candidates:
        if _python_version(python) == PYTHON_VERSION:
            return python
    tried = ", ".join(candidates) or "none found"
    raise LocalStackError(
        "LocalStack's host mode needs Python 3.13 (it does not run on 3.11/3.12). Tried: "
        f"{tried}. Install one (e.g. `pyenv install 3.13`) or set {PYTHON_ENV}=/path/to/python3.13."
    )


def _fingerprint() -> str:
    digest = hashlib.sha256("\n".join(REQUIREMENTS).encode())
    digest.update(CONSTRAINTS.read_bytes())
    return digest.hexdigest()


def kinesis_mock_scripts(layout: Layout) -> list[Path]:
    return sorted(layout.filesystem_root.glob(_KINESIS_MOCK_JS))


def patch_kinesis_mock(main_js: Path) -> bool:
    """Make kinesis-mock bind 127.0.0.1 instead of 0.0.0.0; True if the file changed.

    The bundle holds the host as one string literal; anything else means an unknown version, which is
    refused rather than left listening on every interface.
    """
    text = main_js.read_text(encoding="utf-8")
    count = text.count(_ANY_HOST)
    if count == 0 and _LOOPBACK in text:
        return False
    if count != 1:
        raise LocalStackError(
            f"{main_js}: expected exactly one {_ANY_HOST} bind address to patch, found {count}; "
            "this kinesis-mock version is not supported (it would listen on every interface)"
        )
    main_js.write_text(text.replace(_ANY_HOST, _LOOPBACK), encoding="utf-8")
    return True


def _base_env(layout: Layout) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_ENV_PREFIXES)}
    env.update(
        {
            "OVERRIDE_IN_DOCKER": "0",
            "FILESYSTEM_ROOT": str(layout.filesystem_root),
            "PYTHONNOUSERSITE": "1",
        }
    )
    return env


def is_installed(layout: Layout | None = None) -> bool:
    layout = layout or Layout.default()
    if not (layout.python.exists() and layout.stamp.exists()):
        return False
    try:
        stamp = json.loads(layout.stamp.read_text())
    except ValueError:
        return False
    scripts = kinesis_mock_scripts(layout)
    patched = bool(scripts) and all(_ANY_HOST not in p.read_text(encoding="utf-8") for p in scripts)
    return bool(stamp.get("fingerprint") == _fingerprint() and patched)


def install(layout: Layout | None = None, *, log: Log = _quiet) -> Layout:
    """Create the venv, install pinned LocalStack and kinesis-mock, patch its bind address. Idempotent."""
    layout = layout or Layout.default()
    if is_installed(layout):
        return layout
    layout.home.mkdir(parents=True, exist_ok=True)
    with _install_lock(layout):  # a parallel test worker or make target may be installing right now
        if not is_installed(layout):
            _install(layout, log)
    return layout


@contextlib.contextmanager
def _install_lock(layout: Layout) -> Iterator[None]:
    import fcntl

    with (layout.home / "install.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _install(layout: Layout, log: Log) -> None:
    started = time.monotonic()
    if shutil.which("node") is None:
        raise LocalStackError("kinesis-mock (LocalStack's Kinesis) needs Node.js on PATH; install Node 18 or newer")
    if _python_version(str(layout.python)) != PYTHON_VERSION:
        python = find_python()
        log(f"creating {layout.venv} with {python}")
        shutil.rmtree(layout.venv, ignore_errors=True)
        _run([python, "-m", "venv", str(layout.venv)], timeout=300)
    log(f"installing {', '.join(REQUIREMENTS)} (constraints: {CONSTRAINTS.name})")
    env = _base_env(layout)
    _run(
        [layout.python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", CONSTRAINTS, *REQUIREMENTS],
        env=env,
    )
    log("installing kinesis-mock (npm kinesis-local) with LocalStack's package manager")
    _run([layout.python, "-m", "localstack.cli.lpm", "install", "kinesis-mock"], env=env)
    scripts = kinesis_mock_scripts(layout)
    if not scripts:
        raise LocalStackError(f"kinesis-mock installed but no {_KINESIS_MOCK_JS} under {layout.filesystem_root}")
    for script in scripts:
        if patch_kinesis_mock(script):
            log(f"patched {script} to bind {LOCALHOST}")
    layout.stamp.write_text(
        json.dumps({"fingerprint": _fingerprint(), "version": VERSION, "seconds": time.monotonic() - started})
    )
    log(f"LocalStack {VERSION} installed in {time.monotonic() - started:.1f} s")


# -- run -----------------------------------------------------------------------------------------
def endpoint_for(port: int) -> str:
    return f"http://{LOCALHOST}:{port}"


def health(endpoint: str, timeout: float = 2.0) -> dict[str, str] | None:
    """Service states from /_localstack/health, or None if nothing answers there."""
    try:
        with urllib.request.urlopen(f"{endpoint}/_localstack/health", timeout=timeout) as resp:
            body = json.loads(resp.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None
    services = body.get("services") if isinstance(body, dict) else None
    return {str(k): str(v) for k, v in services.items()} if isinstance(services, dict) else None


def _ready(states: Mapping[str, str] | None, services: Sequence[str]) -> bool:
    return states is not None and all(states.get(s) in ("available", "running") for s in services)


@dataclass
class LocalStack:
    """A LocalStack process started by this module (its own process group, so kinesis-mock goes too)."""

    endpoint: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    instance_dir: Path
    services: tuple[str, ...]
    start_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return _tail(self.log_path.read_text(errors="replace"), lines)
        except OSError:
            return ""

    def stop(self, grace_s: float = STOP_GRACE_S) -> int:
        """TERM LocalStack, KILL it after `grace_s` (or once its shutdown is done but it has not exited),
        then end any child it left (kinesis-mock runs in its own session, so a KILLed gateway would
        orphan it); returns LocalStack's exit code (0, or -9 after a KILL)."""
        if self.process.poll() is None:
            # LocalStack's gateway waits for idle keep-alive connections before exiting; boto3 clients
            # this process no longer references still hold some until they are collected.
            gc.collect()
            tree = process_tree(self.process.pid)
            _signal_group(self.process.pid, signal.SIGTERM)
            if not self._wait_for_exit(grace_s):
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
            end_leftovers(tree, self.process.pid)
        shutil.rmtree(self.instance_dir, ignore_errors=True)
        return int(self.process.returncode)

    def _wait_for_exit(self, grace_s: float, settle_s: float = 5.0) -> bool:
        """Wait for LocalStack to exit after TERM; False if it did not (the caller KILLs it).

        LocalStack 2026.3.0 sometimes misses its own stop: the shutdown thread calls `loop.stop()` without
        waking the event loop, which then sleeps in select() forever (seen about once in 20 stops). By then
        its shutdown hooks have run: kinesis-mock has exited and the gateway no longer listens. A process
        in that state for `settle_s` has nothing left to clean up, so waiting out the grace period is
        pointless.
        """
        deadline = time.monotonic() + grace_s
        idle_since: float | None = None
        while True:
            try:
                self.process.wait(max(0.0, min(0.25, deadline - time.monotonic())))
                return True
            except subprocess.TimeoutExpired:
                now = time.monotonic()
                if now >= deadline:
                    return False
            if set(process_tree(self.process.pid)) <= {self.process.pid} and not listening_sockets(self.process.pid):
                idle_since = idle_since or now
                if now - idle_since >= settle_s:
                    return False
            else:
                idle_since = None

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _warm_kinesis(endpoint: str) -> None:
    """kinesis-mock starts on the first Kinesis request; pay that here, not in the caller's first call."""
    import boto3

    client = boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    try:
        client.list_streams(Limit=1)
    finally:
        client.close()  # an idle keep-alive connection would hold up LocalStack's shutdown


def _prune_logs(directory: Path, keep: int = 20) -> None:
    """Free ports make one log per run; keep the most recent ones."""
    logs = sorted(directory.glob("localstack-*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in logs[keep:]:
        old.unlink(missing_ok=True)


def launch(
    port: int = DEFAULT_PORT,
    *,
    services: Sequence[str] = DEFAULT_SERVICES,
    layout: Layout | None = None,
    timeout_s: float = 120.0,
    extra_env: Mapping[str, str] | None = None,
    log: Log = _quiet,
) -> LocalStack:
    """Install if needed, start LocalStack on 127.0.0.1:`port` (0: a free port) and wait until healthy."""
    layout = install(layout, log=log)
    port = port or free_port()
    endpoint = endpoint_for(port)
    if health(endpoint, timeout=0.5) is not None:
        raise LocalStackError(f"something already answers on {endpoint}; stop it or choose another port")
    for script in kinesis_mock_scripts(layout):
        patch_kinesis_mock(script)
    instance = layout.instance_dir(port)
    shutil.rmtree(instance, ignore_errors=True)
    (instance / "volume").mkdir(parents=True)
    log_path = layout.home / "logs" / f"localstack-{port}.log"  # kept after stop() for post-mortems
    log_path.parent.mkdir(exist_ok=True)
    _prune_logs(log_path.parent)
    env = _base_env(layout)
    env.update(
        {
            "GATEWAY_LISTEN": f"{LOCALHOST}:{port}",
            "GATEWAY_SERVER": "hypercorn",
            "LOCALSTACK_HOST": f"{LOCALHOST}:{port}",
            # Queue URLs as http://127.0.0.1:PORT/queue/REGION/ACCOUNT/NAME: resolvable without DNS tricks.
            "SQS_ENDPOINT_STRATEGY": "path",
            "DNS_ADDRESS": "0",
            "DISABLE_EVENTS": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "SERVICES": ",".join(services),
            "LOCALSTACK_VOLUME_DIR": str(instance / "volume"),
            "PERSISTENCE": "0",
            "LS_LOG": os.environ.get("SERVINGKIT_LOCALSTACK_LOG", "warn"),
            **(extra_env or {}),
        }
    )
    cmd = [str(layout.python), "-m", "localstack.runtime.main"]
    started = time.monotonic()
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    ls = LocalStack(endpoint, port, process, log_path, instance, tuple(services))
    log(f"starting LocalStack {VERSION} on {endpoint} (pid {process.pid}, log {log_path})")
    try:
        deadline = started + timeout_s
        while not _ready(health(endpoint), services):
            if process.poll() is not None:
                raise LocalStackError(
                    f"`{' '.join(cmd)}` exited with {process.returncode} before becoming healthy; "
                    f"log {log_path}:\n{ls.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise LocalStackError(
                    f"LocalStack on {endpoint} not healthy after {timeout_s:.0f} s "
                    f"(health: {health(endpoint)}); log {log_path}:\n{ls.log_tail()}"
                )
            time.sleep(0.2)
        ls.timings["gateway_s"] = round(time.monotonic() - started, 3)
        if "kinesis" in services:
            try:
                _warm_kinesis(endpoint)
            except Exception as exc:
                raise LocalStackError(f"Kinesis on {endpoint} failed to start: {exc}; log:\n{ls.log_tail()}") from exc
            ls.timings["kinesis_s"] = round(time.monotonic() - started, 3)
        if exposed := exposed_listeners(process.pid):
            raise LocalStackError(f"LocalStack listens beyond loopback on {exposed}; refusing to keep it running")
    except BaseException:
        ls.stop(grace_s=5)
        raise
    ls.start_seconds = round(time.monotonic() - started, 3)
    log(f"LocalStack ready on {endpoint} in {ls.start_seconds:.1f} s")
    return ls


# -- module-level API (one instance per process) ------------------------------------------------------
_current: LocalStack | None = None


def start(
    port: int = DEFAULT_PORT,
    *,
    services: Sequence[str] = DEFAULT_SERVICES,
    layout: Layout | None = None,
    log: Log = _quiet,
) -> str:
    """Start LocalStack (installing it first if needed) and return its endpoint URL; `stop()` ends it."""
    global _current
    if _current is not None and _current.running():
        raise LocalStackError(f"LocalStack already started by this process on {_current.endpoint}")
    _current = launch(port, services=services, layout=layout, log=log)
    return _current.endpoint


def stop() -> int | None:
    """Stop the instance that `start()` or `ensure_running()` started; None if there was none."""
    global _current
    if _current is None:
        return None
    code = _current.stop()
    _current = None
    return code


def current() -> LocalStack | None:
    return _current


def ensure_running(
    endpoint: str | None = None,
    *,
    services: Sequence[str] = DEFAULT_SERVICES,
    layout: Layout | None = None,
    log: Log = _quiet,
) -> str:
    """Reuse LocalStack if it answers healthy at `endpoint` ($LOCALSTACK_ENDPOINT, else 127.0.0.1:4566);
    if nothing answers there, install and start one on that port."""
    from urllib.parse import urlsplit

    endpoint = (endpoint or os.environ.get("LOCALSTACK_ENDPOINT") or endpoint_for(DEFAULT_PORT)).rstrip("/")
    states = health(endpoint)
    if _ready(states, services):
        return endpoint
    if states is not None:
        raise LocalStackError(f"LocalStack at {endpoint} does not offer all of {tuple(services)}: {states}")
    parts = urlsplit(endpoint)
    if parts.hostname not in (LOCALHOST, "localhost"):
        raise LocalStackError(f"nothing answers at {endpoint}, and only {LOCALHOST} can be started here")
    return start(parts.port or DEFAULT_PORT, services=services, layout=layout, log=log)
