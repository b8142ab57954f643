"""A stand-in for AWS's Lambda Python base image, built locally because no container registry is reachable.

A debootstrapped Debian whose suite ships the image's python3.X becomes the root filesystem; the files in
`standin/` give it the real base image's layout and environment (see its Dockerfile). The image is tagged by
a digest of everything that goes into it, so an unchanged stand-in is built once per Docker data root.
`SERVINGKIT_BASE_IMAGE` names a real base image instead (where a registry is reachable), and the same
tests run unchanged on it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from servingkit.image.engine import DockerEngine, EngineError, ensure_packages
from servingkit.image.platform import DEV_REQUIREMENTS, Platform, base_image, locked_versions

FILES = Path(__file__).resolve().parent / "standin"
BASE_ENV = "SERVINGKIT_BASE_IMAGE"
MIRROR_ENV = "SERVINGKIT_DEBIAN_MIRROR"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# The Debian suite that ships each Python minor as python3.X (no suite ships 3.12).
SUITES = {"3.11": "bookworm", "3.13": "trixie"}
EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")

Progress = Callable[[str], None]


def awslambdaric_version(requirements: Path = DEV_REQUIREMENTS) -> str:
    """The runtime interface client's pin (one place: the dev lock, which the tests also run)."""
    try:
        version = locked_versions(requirements).get("awslambdaric")
    except ValueError as exc:
        raise EngineError(str(exc)) from None
    if not version:
        raise EngineError(f"{requirements}: no `awslambdaric==<version>` pin")
    return version


def _manylinux_policy(platform: Platform) -> str:
    major, minor = platform.glibc
    return (
        f'"""PEP 600 policy of the stand-in: wheels for glibc up to {major}.{minor} (the real base OS)."""\n\n\n'
        "def manylinux_compatible(tag_major: int, tag_minor: int, tag_arch: str) -> bool:\n"
        f"    return (tag_major, tag_minor) <= ({major}, {minor})\n"
    )


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def _rootfs(engine: DockerEngine, suite: str, mirror: str, progress: Progress) -> str:
    """`servingkit/debian-minbase:<suite>`: debootstrap --variant=minbase, imported as an image."""
    tag = f"servingkit/debian-minbase:{suite}"
    if engine.image_exists(tag):
        return tag
    ensure_packages("debootstrap", binaries=("debootstrap",))
    python = "python3.13" if suite == "trixie" else "python3.11"
    with tempfile.TemporaryDirectory(prefix="rootfs-") as tmp:
        target = Path(tmp) / suite
        progress(f"debootstrap {suite} (minbase, {python}) from {mirror}: about a minute")
        began = time.monotonic()
        cmd = [
            "debootstrap",
            "--variant=minbase",
            f"--include={python},{python}-venv,ca-certificates",
            suite,
            str(target),
            mirror,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
        if done.returncode != 0:
            raise EngineError(f"`{' '.join(cmd)}` exited with {done.returncode}: {done.stdout[-2000:]}{done.stderr}")
        progress(f"debootstrap done in {time.monotonic() - began:.0f} s; importing the root filesystem")
        tar = subprocess.Popen(["tar", "-C", str(target), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        try:
            imported = subprocess.run(
                ["docker", "import", "-", tag], stdin=tar.stdout, env=engine.env, capture_output=True, text=True
            )
        finally:
            if tar.stdout:
                tar.stdout.close()
            tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise EngineError(f"docker import of the {suite} root filesystem failed: {imported.stderr[-2000:]}")
    return tag


def build_standin(engine: DockerEngine, platform: Platform | None = None, progress: Progress = print) -> str:
    """The base image tag to build the function image on: $SERVINGKIT_BASE_IMAGE, or the local stand-in."""
    if os.environ.get(BASE_ENV):
        return os.environ[BASE_ENV]
    platform = platform or base_image().platform
    suite = SUITES.get(platform.python)
    if suite is None:
        raise EngineError(
            f"no Debian suite ships python{platform.python} for the stand-in base image "
            f"(known: {', '.join(SUITES)}); set {BASE_ENV} to a real Lambda base image"
        )
    ric = awslambdaric_version()
    policy = _manylinux_policy(platform)
    files = sorted(p for p in FILES.iterdir() if p.is_file())
    certs = sorted(EXTRA_CA_DIR.glob("*.crt")) if EXTRA_CA_DIR.is_dir() else []
    digest = _digest(
        platform.python.encode(),
        suite.encode(),
        ric.encode(),
        policy.encode(),
        *(p.name.encode() + p.read_bytes() for p in files),
        *(c.read_bytes() for c in certs),
    )
    tag = f"servingkit/lambda-python-standin:{platform.python}-{digest}"
    if engine.image_exists(tag):
        return tag
    rootfs = _rootfs(engine, suite, os.environ.get(MIRROR_ENV, DEFAULT_MIRROR), progress)
    progress(f"building the Lambda base stand-in {tag} (python{platform.python}, awslambdaric {ric})")
    with tempfile.TemporaryDirectory(prefix="standin-") as tmp:
        context = Path(tmp)
        for p in files:
            shutil.copy2(p, context / p.name)
        (context / "_manylinux.py").write_text(policy)
        (context / "certs").mkdir()
        (context / "certs" / "README").write_text("the build machine's extra CA certificates, if any\n")
        for c in certs:
            shutil.copy2(c, context / "certs" / c.name)
        engine.docker(
            "build",
            "--network=host",
            "--build-arg",
            f"ROOTFS={rootfs}",
            "--build-arg",
            f"PYTHON_MINOR={platform.python}",
            "--build-arg",
            f"AWSLAMBDARIC={ric}",
            "-t",
            tag,
            str(context),
            timeout=1200,
        )
    return tag
