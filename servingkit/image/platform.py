"""The image's runtime platform, read from the Dockerfile: Python minor, base OS glibc, architectures, wheel tags.

One place for what pip may install into the image, shared by the static wheel check, the stand-in base
(its `_manylinux` policy) and the venv (same Python minor).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
REQUIREMENTS = ROOT / "requirements.txt"
"""What the Dockerfile installs into the image: the runtime lock (pins with hashes, `make lock`)."""
DEV_REQUIREMENTS = ROOT / "requirements-dev.txt"
"""What `.venv` installs: the dev lock, with the runtime lock's versions."""

# AWS's Lambda base images for Python 3.12+ are Amazon Linux 2023, whose glibc is 2.34; the older
# ones (Python <= 3.11) are Amazon Linux 2 with glibc 2.26.
AL2023_GLIBC = (2, 34)
AL2_GLIBC = (2, 26)
ARCHITECTURES = ("x86_64", "aarch64")
"""Machine names as wheels tag them; Lambda and CDK call aarch64 `arm64`."""

_CONTINUATION = re.compile(r"\\\n")
_COMMENT = re.compile(r"(^|\s)#.*$")
_HASH = re.compile(r"\s--hash[=\s]\S+")
_BASE = re.compile(r"^ARG BASE_IMAGE=(?P<image>public\.ecr\.aws/lambda/python:(?P<minor>\d+\.\d+)\S*)$", re.M)


@dataclass(frozen=True, slots=True)
class Platform:
    """What a wheel must match to install into the image."""

    python: str  # "3.13"
    glibc: tuple[int, int]

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")

    def manylinux_tags(self, arch: str) -> list[str]:
        """Every manylinux tag the base accepts, newest first: pip does not widen `--platform` by itself."""
        if arch not in ARCHITECTURES:
            raise ValueError(f"architecture {arch!r}: expected one of {', '.join(ARCHITECTURES)}")
        major, newest = self.glibc
        tags = [f"manylinux_{major}_{minor}_{arch}" for minor in range(newest, 16, -1)]
        return [*tags, f"manylinux2014_{arch}"]  # the PEP 599 alias of manylinux_2_17


@dataclass(frozen=True, slots=True)
class BaseImage:
    """The Dockerfile's default base image and the platform it implies."""

    image: str
    platform: Platform


def base_image(dockerfile: Path = DOCKERFILE) -> BaseImage:
    """Parse `ARG BASE_IMAGE=public.ecr.aws/lambda/python:<minor>...` (the tag names the Python minor)."""
    found = _BASE.search(dockerfile.read_text())
    if not found:
        raise ValueError(f"{dockerfile}: no `ARG BASE_IMAGE=public.ecr.aws/lambda/python:<3.X...>` line")
    minor = found["minor"]
    glibc = AL2023_GLIBC if tuple(map(int, minor.split("."))) >= (3, 12) else AL2_GLIBC
    return BaseImage(image=found["image"], platform=Platform(python=minor, glibc=glibc))


def requirement_lines(text: str) -> list[str]:
    """The logical lines of a requirements file: continuations joined, comments and `--hash` options dropped."""
    lines = (_HASH.sub("", _COMMENT.sub("", raw)).strip() for raw in _CONTINUATION.sub(" ", text).splitlines())
    return [line for line in lines if line]


def locked_versions(lock: Path) -> dict[str, str]:
    """A lock's pins, `{canonical name: version}`; a requirement that is not one exact `==` pin is an error."""
    pins: dict[str, str] = {}
    for line in requirement_lines(lock.read_text()):
        if line.startswith("-"):  # an option (`--index-url`, `-c`): no pin
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise ValueError(f"{lock}: {line!r} is not a requirement: {exc}") from None
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator != "==" or specs[0].version.endswith("*"):
            raise ValueError(f"{lock}: {line!r} is not pinned (`name==version`): run `make lock`")
        pins[canonicalize_name(req.name)] = specs[0].version
    return pins
