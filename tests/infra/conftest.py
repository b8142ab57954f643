"""Session fixtures of the infra tier: the synthesized variants (see synth.py) and the pinned CDK CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.infra.synth import ROOT, VARIANTS, Synth, synth


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cdk")


@pytest.fixture(scope="session")
def default(synth_root: Path) -> Synth:
    return synth("default", synth_root)


@pytest.fixture(scope="session")
def provisioned(synth_root: Path) -> Synth:
    return synth("provisioned", synth_root)


@pytest.fixture(scope="session")
def rollout(synth_root: Path) -> Synth:
    return synth("rollout", synth_root)


@pytest.fixture(scope="session")
def monitored(synth_root: Path) -> Synth:
    return synth("monitored", synth_root)


@pytest.fixture(scope="session")
def monitored_ab(synth_root: Path) -> Synth:
    return synth("monitored_ab", synth_root)


@pytest.fixture(scope="session")
def bluegreen(synth_root: Path) -> Synth:
    return synth("bluegreen", synth_root)


@pytest.fixture(scope="session")
def bluegreen_next(synth_root: Path) -> Synth:
    return synth("bluegreen_next", synth_root)


@pytest.fixture(scope="session", params=list(VARIANTS))
def every(request: pytest.FixtureRequest, synth_root: Path) -> Synth:
    return synth(str(request.param), synth_root)


@pytest.fixture(scope="session")
def cdk_cli() -> list[str]:
    """The pinned CDK CLI from package-lock.json (`npm ci` when node_modules lacks it)."""
    cli = ROOT / "node_modules" / ".bin" / "cdk"
    if not cli.exists():
        npm = shutil.which("npm")
        assert npm, "npm is required for the CDK CLI (Node 20+)"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=ROOT, check=True, capture_output=True)
    return [str(cli)]
