"""The docs tier's world: a scratch copy of the tracked files, the demo model trained once, an emulator.

Each document gets its own copy (a fresh checkout as a new user has it, with `.venv` linked and
`node_modules` hard-linked from this one, and the model already trained), `.venv/bin` first on PATH, and the
standard AWS variables pointing at an embedded moto server that the session starts and stops.
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
    (dest / ".venv").symlink_to((ROOT / ".venv").resolve())
    # node_modules is hard-linked, not symlinked: a doc's `npm ci` empties node_modules before installing,
    # and through a link it would empty the checkout's own (npm follows it) under every other tier.
    _link_node_modules(ROOT, dest)


def _link_node_modules(src: Path, dest: Path) -> None:
    """Files hard-linked (npm replaces files, never rewrites them in place), so a copy costs no space."""
    if (src / "node_modules").is_dir():
        shutil.copytree((src / "node_modules").resolve(), dest / "node_modules", symlinks=True, copy_function=_link)


def _link(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system
        shutil.copy2(src, dst)


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
    shutil.copytree(template, root, symlinks=True, ignore=shutil.ignore_patterns("node_modules"))
    _link_node_modules(template, root)
    (root / "build" / "model" / "MLmodel").touch()  # newer than the venv's stamp: make keeps the model
    return root
