"""Shared fixtures. Each test folder is a tier and gets its marker automatically."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIERS = ("unit", "integration", "infra", "image", "e2e", "docs", "localstack")

# Never reach AWS from a test: fake credentials and a fixed region for every boto3 client.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_SECURITY_TOKEN", "testing")
os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT).parts
        if len(parts) > 1 and parts[0] == "tests" and parts[1] in TIERS:
            item.add_marker(getattr(pytest.mark, parts[1]))


@pytest.fixture(autouse=True)
def _unfreeze_gc() -> Iterator[None]:
    """`lambda_fn.runtime.get_model` freezes the heap once per container; one test process is many containers, so
    what a test froze is made collectable again after it (else memory would only grow over the session)."""
    yield
    gc.unfreeze()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Remove every kit setting from the environment and reset per-container caches."""
    from lambda_fn import runtime
    from lambda_fn.config import ENV_FIELDS

    for name in ENV_FIELDS:
        monkeypatch.delenv(name, raising=False)
    runtime.reset()
    yield monkeypatch
    runtime.reset()


@pytest.fixture(scope="session")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo model (directory, release.json): build/ when `make model` ran (with the kit's digest rules: a
    build/release.json written before them pins another digest), else a fresh export."""
    import json

    from lambda_fn.model_store import artifact_sha256

    model, meta = ROOT / "build" / "model", ROOT / "build" / "release.json"
    fresh = (model / "MLmodel").is_file() and meta.is_file()
    if fresh and json.loads(meta.read_text()).get("sha256") == artifact_sha256(model):
        return model, meta
    from servingkit.train import train

    out = tmp_path_factory.mktemp("release")
    train(rows=20_000, tracking_uri=f"sqlite:///{out / 'mlruns.db'}", export_dir=out / "model", register=False)
    return out / "model", out / "release.json"
