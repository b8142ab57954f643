"""One Lambda execution environment played locally: the function image run as Lambda runs it.

The container starts from the image's own entrypoint with the handler CMD, and its real runtime client
(awslambdaric) talks to a Runtime API served on 127.0.0.1 (`runtime_api.RuntimeAPI`). As on Lambda: a
read-only root filesystem with a writable `/tmp`, a non-root user, the function's memory as the container's
limit, one invocation at a time, a fresh environment (a new cold start) after an init error, a crash or a
timeout. An `ImageFunction` is a handler (`fn(event, context)`), so the local event source mapping and the
local HTTP server drive the image exactly as they drive the in-process handler.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servingkit.image.engine import DockerEngine
from servingkit.localcloud.poller import FunctionError
from servingkit.localcloud.runtime_api import INIT_TIMEOUT_S, Invocation, RuntimeAPI

# The user Lambda runs functions as (sbx_user1051); any non-root id shows the same permission surprises.
LAMBDA_USER = "993:990"
TMP_SIZE_MB = 512  # Lambda's default ephemeral storage
_LOG_TAIL = 60


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """What the function's template says: handler CMD, environment, memory and timeout."""

    handler: str
    environment: Mapping[str, str]
    function_name: str = "serving-local-scorer"
    memory_mb: int = 1024
    timeout_s: float = 60.0
    region: str = "us-east-1"
    account: str = "123456789012"

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{self.function_name}"


@dataclass
class Environment:
    """One running container (an execution environment) and what it cost to start."""

    container: str
    started: float  # monotonic time of `docker run`
    logs: subprocess.Popen[bytes]
    log_path: Path
    invocations: int = 0
    init_seconds: float | None = None  # `docker run` → the runtime's first /next (init done)
    first_response_seconds: float | None = None  # `docker run` → the first invocation's answer


@dataclass
class ImageFunction:
    """The image as a Lambda function: call it with (event, context); errors raise `FunctionError`."""

    engine: DockerEngine
    image: str
    spec: FunctionSpec
    workdir: Path
    cold_starts: list[Environment] = field(default_factory=list)
    _api: RuntimeAPI | None = None
    _env: Environment | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- lifecycle ---------------------------------------------------------------------------------------

    def _lambda_environment(self, api: RuntimeAPI) -> dict[str, str]:
        """What Lambda puts in a function's environment, then the function's own variables."""
        return {
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "AWS_LAMBDA_FUNCTION_NAME": self.spec.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.spec.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.spec.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"local/{uuid.uuid4().hex}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_REGION": self.spec.region,
            "AWS_DEFAULT_REGION": self.spec.region,
            **self.spec.environment,
        }

    def _start(self) -> Environment:
        if self._api is None:
            self._api = RuntimeAPI()
        else:
            self._api.reset()
        name = f"sk-fn-{uuid.uuid4().hex[:12]}"
        env_file = self.workdir / f"{name}.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in self._lambda_environment(self._api).items()))
        memory = f"{self.spec.memory_mb}m"
        began = time.monotonic()
        self.engine.docker(
            "run",
            "--detach",
            "--name",
            name,
            "--network=host",
            "--read-only",
            "--tmpfs",
            f"/tmp:rw,exec,mode=1777,size={TMP_SIZE_MB}m",
            "--user",
            LAMBDA_USER,
            "--memory",
            memory,
            "--memory-swap",
            memory,
            "--env-file",
            str(env_file),
            self.image,
            self.spec.handler,
        )
        env_file.unlink()
        log_path = self.workdir / f"{name}.log"
        with log_path.open("wb") as out:
            logs = subprocess.Popen(
                ["docker", "logs", "--follow", name], env=self.engine.env, stdout=out, stderr=subprocess.STDOUT
            )
        environment = Environment(container=name, started=began, logs=logs, log_path=log_path)
        self.cold_starts.append(environment)
        threading.Thread(target=self._watch, args=(environment, self._api), daemon=True).start()
        return environment

    def _watch(self, environment: Environment, api: RuntimeAPI) -> None:
        """Tell the Runtime API when the container exits, so an invocation in flight ends at once."""
        done = subprocess.run(
            ["docker", "wait", environment.container], env=self.engine.env, capture_output=True, text=True
        )
        if self._env is environment:
            code = done.stdout.strip()
            api.report_runtime_exit(int(code) if code.lstrip("-").isdigit() else None)

    def _discard(self, environment: Environment) -> None:
        """End an execution environment (Lambda does so after an init error, a crash or a timeout)."""
        self.engine.docker("rm", "--force", environment.container, check=False, timeout=60)
        environment.logs.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            environment.logs.wait(10)
        if self._env is environment:
            self._env = None

    def running(self) -> bool:
        if self._env is None:
            return False
        state = self.engine.docker(
            "inspect", "--format", "{{.State.Running}}", self._env.container, check=False, timeout=30
        )
        return state.stdout.strip() == "true"

    def stop(self) -> None:
        with self._lock:
            if self._env is not None:
                self._discard(self._env)
            if self._api is not None:
                self._api.close()
                self._api = None

    def __enter__(self) -> ImageFunction:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- invocations -------------------------------------------------------------------------------------

    def logs(self, environment: Environment | None = None, lines: int = _LOG_TAIL) -> str:
        """The last lines the container wrote (stdout and stderr: Lambda's function log)."""
        env = environment or self._env or (self.cold_starts[-1] if self.cold_starts else None)
        if env is None or not env.log_path.exists():
            return ""
        return "\n".join(env.log_path.read_text(errors="replace").splitlines()[-lines:])

    def invoke(self, event: Any, timeout_s: float | None = None) -> Invocation:
        """One synchronous invocation, as Lambda's Invoke: a cold start first if no environment is warm."""
        with self._lock:
            if self._env is not None and not self.running():
                self._discard(self._env)
            if self._env is None:
                self._env = self._start()
            env, api = self._env, self._api
            assert api is not None
            timeout = timeout_s or self.spec.timeout_s
            # Lambda caps init at 10 s, then retries it within the first invocation's timeout.
            pickup = timeout + INIT_TIMEOUT_S if env.invocations == 0 else INIT_TIMEOUT_S
            result = api.invoke(event, timeout_s=timeout, function_arn=self.spec.arn, pickup_timeout_s=pickup)
            env.invocations += 1
            if env.init_seconds is None and result.timings.picked_up_at is not None:
                env.init_seconds = max(0.0, result.timings.picked_up_at - env.started)
            if env.first_response_seconds is None:
                env.first_response_seconds = time.monotonic() - env.started
            if result.error is not None and (api.init_error is not None or result.timed_out or not self.running()):
                self._discard(env)
            return result

    def __call__(self, event: dict[str, Any], context: Any = None) -> Any:
        result = self.invoke(event)
        if result.error is not None:
            logs = self.logs()
            raise FunctionError(
                f"{result.error.type}: {result.error.message}" + (f"\n--- function log ---\n{logs}" if logs else "")
            )
        return result.payload

    def process_usage(self) -> tuple[int, float] | None:
        """The function process's peak RSS (bytes, VmHWM) and CPU seconds so far, read from the host's /proc."""
        if self._env is None:
            return None
        pid = self.engine.docker("inspect", "--format", "{{.State.Pid}}", self._env.container).stdout.strip()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        hwm = next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:"))
        ticks = os.sysconf("SC_CLK_TCK")
        return hwm, (int(fields[11]) + int(fields[12])) / ticks  # utime + stime of the process (all threads)
