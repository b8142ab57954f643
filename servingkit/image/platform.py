"""The image's runtime platform, read from the Dockerfile: Python minor, base OS glibc, architectures, wheel tags.

One place for what pip may install into the image, shared by the static wheel check, the stand-in base
(its `_manylinux` policy) and the venv (same Python minor).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
REQUIREMENTS = ROOT / "requirements.txt"
"""What the Dockerfile installs into the image (runtime pins only)."""

# AWS's Lambda base images for Python 3.12+ are Amazon Linux 2023, whose glibc is 2.34; the older
# ones (Python <= 3.11) are Amazon Linux 2 with glibc 2.26.
AL2023_GLIBC = (2, 34)
AL2_GLIBC = (2, 26)
ARCHITECTURES = ("x86_64", "aarch64")
"""Machine names as wheels tag them; Lambda and CDK call aarch64 `arm64`."""

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
