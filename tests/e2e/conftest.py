"""Fixtures of the e2e tier: the demo model, trained once into a temporary folder when `make model` did not run."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model directory, release.json): build/ when `make model` ran, else a fresh export."""
    model, meta = ROOT / "build" / "model", ROOT / "build" / "release.json"
    if (model / "MLmodel").is_file() and meta.is_file():
        return model, meta
    from servingkit.train import train

    out = tmp_path_factory.mktemp("release")
    train(rows=20_000, tracking_uri=f"sqlite:///{out / 'mlruns.db'}", export_dir=out / "model", register=False)
    return out / "model", out / "release.json"
