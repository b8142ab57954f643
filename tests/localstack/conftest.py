"""One LocalStack for the whole tier: installed (cached in .localstack/) and started on a free 127.0.0.1
port by the session, stopped afterwards. If it cannot run here, every test of the tier fails with the
reason; nothing is skipped. LOCALSTACK_ENDPOINT reuses an already running LocalStack instead."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from servingkit.localcloud import localstack as ls


@dataclass(frozen=True)
class Running:
    endpoint: str
    instance: ls.LocalStack | None  # None when reusing $LOCALSTACK_ENDPOINT
    install_seconds: float


def _log(message: str) -> None:
    print(f"[localstack] {message}", file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def localstack() -> Iterator[Running]:
    external = os.environ.get("LOCALSTACK_ENDPOINT")
    try:
        if external:
            endpoint = ls.ensure_running(external, log=_log)
            yield Running(endpoint, ls.current(), 0.0)
            ls.stop()
            return
        started = time.monotonic()
        ls.install(log=_log)
        installed = time.monotonic() - started
        instance = ls.launch(0, log=_log)
    except ls.LocalStackError as exc:
        pytest.fail(f"LocalStack cannot run on this machine: {exc}", pytrace=False)
    try:
        yield Running(instance.endpoint, instance, installed)
    finally:
        code = instance.stop()
        _log(f"stopped (exit {code}); install {installed:.1f} s, start {instance.start_seconds:.1f} s")


@pytest.fixture
def pointed(localstack: Running, monkeypatch: pytest.MonkeyPatch) -> Running:
    """boto3 reaches LocalStack only through the SDK's standard endpoint variable."""
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ENDPOINT_URL", localstack.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return localstack


@pytest.fixture
def aws(localstack: Running):
    """The tier's boto3 clients: localstack-client's session, pointed at this tier's LocalStack.

    The session fixes its endpoints when it is made, and prefers $AWS_ENDPOINT_URL (and $USE_SSL) over the
    host it is given: both are set aside while it is made, so its clients reach this LocalStack only.
    """
    from localstack_client.session import Session

    with pytest.MonkeyPatch.context() as env:
        env.delenv("AWS_ENDPOINT_URL", raising=False)
        env.delenv("USE_SSL", raising=False)
        return Session(localstack_host=urlsplit(localstack.endpoint).netloc)


@pytest.fixture(scope="session", autouse=True)
def demo_model() -> None:
    """The end-to-end test serves the demo model; train it once if `make model` has not run."""
    import subprocess

    from tests.conftest import ROOT

    if (ROOT / "build" / "model" / "MLmodel").is_file() and (ROOT / "build" / "release.json").is_file():
        return
    done = subprocess.run([sys.executable, "-m", "servingkit", "train"], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"servingkit train failed ({done.returncode}):\n{done.stderr[-2000:]}", pytrace=False)
