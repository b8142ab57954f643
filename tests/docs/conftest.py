"""The docs tier's world: a scratch copy of the tracked files, the demo model trained once, an emulator.

Each document gets its own copy (a fresh checkout as a new user has it, with `.venv` and `node_modules`
linked from this one and the model already trained), `.venv/bin` first on PATH, and the standard AWS
variables pointing at an embedded moto server that the session starts and stops.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from servingkit.localcloud.emulator import endpoint_environment, start_emulator
from tests.conftest import ROOT

OLD = 946_684_800  # 2000-01-01: copied files older than .venv's stamp, so make never reinstalls the shared venv
# Variables of this process that must not leak into a reader's shell.
DROPPED = ("PYTEST", "MLFLOW_", "AWS_", "SERVINGKIT_", "MODEL_", "POWERTOOLS_", "VIRTUAL_ENV", "PYTHONPATH", "MAKE")


def _copy_tracked(dest: Path) -> None:
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split("\0")
    for name in filter(None, names):
        src = ROOT / name
        if not src.is_file():  # deleted in the work tree, not committed yet
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)
        os.utime(target, (OLD, OLD), follow_symlinks=False)
    for link in (".venv", "node_modules"):
        (dest / link).symlink_to((ROOT / link).resolve())


def reader_env(root: Path, endpoint: str) -> dict[str, str]:
    """A new user's shell in `root`: the venv first on PATH, AWS pointed at the emulator, no host AWS config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(DROPPED)}
    env.update(endpoint_environment(endpoint))
    env.pop("AWS_SESSION_TOKEN", None)
    env.update(
        PATH=f"{root / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        # .venv's editable install points at the checkout it was made in: the copy's code must win.
        PYTHONPATH=str(root),
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_PAGER="",
        OMP_NUM_THREADS="1",
        TERM="dumb",
    )
    return env


@pytest.fixture(scope="session")
def emulator() -> Iterator[str]:
    with start_emulator() as emu:
        yield emu.endpoint_url


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory, emulator: str) -> Path:
    """The scratch checkout with the demo model trained once (`servingkit train`, as `make model` runs it)."""
    root = tmp_path_factory.mktemp("docs") / "checkout"
    _copy_tracked(root)
    env = reader_env(root, emulator)
    done = subprocess.run(
        [str(root / ".venv" / "bin" / "servingkit"), "train", "--rows", "20000"],  # make model's, smaller
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"servingkit train failed in the scratch checkout:\n{done.stdout}\n{done.stderr}"
    return root


@pytest.fixture
def checkout(template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the trained scratch checkout for one document."""
    root = tmp_path / "checkout"
    shutil.copytree(template, root, symlinks=True)
    (root / "build" / "model" / "MLmodel").touch()  # newer than the venv's stamp: make keeps the model
    return root
