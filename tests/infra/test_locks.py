"""The lock files are fresh: compiled from pyproject.toml (`make lock`), hashed, and one set of versions.

requirements.txt (the image's runtime) and requirements-dev.txt (.venv) are compiled by uv from the direct
requirements of pyproject.toml. These checks read the files only (no network): a requirement added to
pyproject.toml without `make lock` fails here, and so does a hand edit that drops a hash or lets the two locks
disagree.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from servingkit.image.platform import DEV_REQUIREMENTS, REQUIREMENTS, locked_versions, requirement_lines
from servingkit.image.standin import awslambdaric_version
from tests.infra.synth import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
MAKEFILE = (ROOT / "Makefile").read_text()
# Direct requirements the image does not need (the CLI's), left out of the runtime lock by `make lock`.
NOT_IN_IMAGE = {canonicalize_name(n) for n in re.findall(r"--no-emit-package\s+(\S+)", MAKEFILE)}
LOCKS = {"runtime": REQUIREMENTS, "dev": DEV_REQUIREMENTS}


def _applies(req: Requirement) -> bool:
    return req.marker is None or req.marker.evaluate({"extra": ""})


def direct(extras: tuple[str, ...] = ()) -> list[Requirement]:
    """[project] dependencies plus the named extras, the project's references to its own extras expanded."""
    own = canonicalize_name(PROJECT["name"])
    found: list[Requirement] = []
    todo, seen = [*PROJECT["dependencies"]], set(extras)
    for extra in extras:
        todo += PROJECT["optional-dependencies"][extra]
    while todo:
        req = Requirement(todo.pop(0))
        if canonicalize_name(req.name) != own:
            found.append(req)
            continue
        for extra in sorted(req.extras - seen):
            seen.add(extra)
            todo += PROJECT["optional-dependencies"][extra]
    return [r for r in found if _applies(r)]


def _unmet(needed: list[Requirement], pins: dict[str, str]) -> list[str]:
    """Each requirement the lock lacks or pins outside its range, with the locked version."""
    locked = {str(r): pins.get(canonicalize_name(r.name)) for r in needed}
    return [f"{r} (locked: {v})" for r, v in locked.items() if v is None or v not in Requirement(r).specifier]


@pytest.mark.parametrize("which", LOCKS)
def test_every_locked_package_is_pinned_with_hashes(which: str) -> None:
    lock = LOCKS[which]
    entries = re.split(r"\n(?=\S)", re.sub(r"(?m)^\s*#.*\n", "", lock.read_text()))
    unhashed = [e.split()[0] for e in entries if e.strip() and not re.search(r"--hash=sha256:[0-9a-f]{64}", e)]
    assert not unhashed, f"{lock.name}: no --hash for {unhashed}; run `make lock`"
    assert len(locked_versions(lock)) == sum(1 for e in entries if e.strip())  # every entry is one exact pin
    assert "make lock" in lock.read_text().split("\n", 3)[2], "the header says how the lock is regenerated"


def test_the_runtime_lock_satisfies_the_direct_requirements() -> None:
    pins = locked_versions(REQUIREMENTS)
    needed = [r for r in direct() if canonicalize_name(r.name) not in NOT_IN_IMAGE]
    assert {"click"} == NOT_IN_IMAGE, NOT_IN_IMAGE  # only the CLI stays out of the image
    assert not NOT_IN_IMAGE & set(pins), "the CLI's packages are not in the image"
    unmet = _unmet(needed, pins)
    assert not unmet, f"requirements.txt does not satisfy {unmet}; run `make lock`"


def test_the_dev_lock_satisfies_the_dev_extra_and_everything_it_names() -> None:
    pins = locked_versions(DEV_REQUIREMENTS)
    needed = direct(("dev",))
    names = {canonicalize_name(r.name) for r in needed}
    assert {"mlflow", "aws-cdk-lib", "pyspark", "hypothesis", "localstack-client", "click", "uv"} <= names
    unmet = _unmet(needed, pins)
    assert not unmet, f"requirements-dev.txt does not satisfy {unmet}; run `make lock`"


def test_the_runtime_lock_is_the_dev_locks_versions() -> None:
    runtime, dev = locked_versions(REQUIREMENTS), locked_versions(DEV_REQUIREMENTS)
    differ = {n: (v, dev.get(n)) for n, v in runtime.items() if dev.get(n) != v}
    assert not differ, f"requirements.txt vs requirements-dev.txt: {differ}; run `make lock`"


def test_one_boto_family() -> None:
    """boto3, botocore and their stubs are released together: one version in the lock."""
    pins = locked_versions(DEV_REQUIREMENTS)
    family = {n: pins[n] for n in ("boto3", "botocore", "boto3-stubs", "botocore-stubs") if n in pins}
    assert {"boto3", "botocore", "boto3-stubs"} <= set(family)
    assert len({family["boto3"], family["botocore"], family["boto3-stubs"]}) == 1, family
    assert "aiobotocore" not in pins  # it would pin botocore to its own release


def test_the_dev_lock_is_closed_under_dependencies() -> None:
    """Each locked package's own requirements (as the installed .venv declares them) are locked too."""
    pins = locked_versions(DEV_REQUIREMENTS)
    open_ = []
    for name, version in pins.items():
        dist = importlib.metadata.distribution(name)
        assert dist.version == version, f".venv has {name} {dist.version}, the lock {version}: run `make venv`"
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            locked = pins.get(canonicalize_name(req.name))
            if locked is None or locked not in req.specifier:
                open_.append(f"{name} needs {req} (locked: {locked})")
    assert not open_, open_


def test_the_image_and_the_venv_install_the_locks_with_hashes() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    install = re.search(r"^RUN pip install (.*?)(?:&&|$)", dockerfile.replace("\\\n", " "), re.M)
    assert install, "the Dockerfile installs no requirements"
    assert {"--require-hashes", "--only-binary=:all:", "--no-cache-dir"} <= set(install[1].split())
    assert "-r /tmp/requirements.txt" in " ".join(install[1].split())
    stamp = re.search(r"^\$\(STAMP\): (.*)\n((?:\t.*\n)+)", MAKEFILE, re.M)
    assert stamp and {"pyproject.toml", "requirements.txt", "requirements-dev.txt"} <= set(stamp[1].split())
    assert "-m pip install -q --require-hashes -r requirements-dev.txt" in stamp[2]


def test_the_stand_in_reads_the_runtime_interface_client_from_the_dev_lock(tmp_path: Path) -> None:
    assert awslambdaric_version() == locked_versions(DEV_REQUIREMENTS)["awslambdaric"]
    lock = tmp_path / "requirements-dev.txt"
    lock.write_text(
        "# header\nawslambdaric==4.2.2 \\\n    --hash=sha256:" + "0" * 64 + " \\\n    --hash=sha256:" + "1" * 64
        + "\n    # via serverless-model-serving-kit (pyproject.toml)\nboto3==1.43.126 \\\n    --hash=sha256:" + "2" * 64
        + "\n"
    )  # fmt: skip
    assert awslambdaric_version(lock) == "4.2.2"
    assert requirement_lines(lock.read_text())[0] == "awslambdaric==4.2.2"
    lock.write_text("awslambdaric>=4\n")
    with pytest.raises(Exception, match="not pinned"):
        awslambdaric_version(lock)
