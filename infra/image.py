"""The one container image both functions run; each function overrides the CMD with its handler."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import IgnoreMode
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_lambda as lambda_

from infra.topology import API_HANDLER, STREAM_HANDLER

__all__ = ["API_HANDLER", "STREAM_HANDLER", "image_code"]

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = "Dockerfile"

# Belt and braces with .dockerignore (an allow-list): synth hashes the build context, so anything
# large left in it (a venv, node_modules, cdk.out, models) would make every synth slow and every
# image rebuild. These are excluded even if someone edits .dockerignore.
ASSET_EXCLUDE = [
    ".venv",
    ".git",
    "node_modules",
    "cdk.out",
    ".cdk-home",
    "build",
    "mlruns",
    "mlruns.db",
    "mlartifacts",
    ".localstack",
    "**/__pycache__",
    "**/*.pyc",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    "tests",
    "docs",
]


def image_code(handler: str, architecture: str, base_image: str | None = None) -> lambda_.DockerImageCode:
    """Image asset from the repository's Dockerfile; synth only hashes the context, deploy builds it.

    `base_image` overrides the Dockerfile's BASE_IMAGE (e.g. the same tag pinned by digest).
    """
    platform = ecr_assets.Platform.LINUX_ARM64 if architecture == "arm64" else ecr_assets.Platform.LINUX_AMD64
    return lambda_.DockerImageCode.from_image_asset(
        str(ROOT),
        file=DOCKERFILE,
        cmd=[handler],
        platform=platform,
        exclude=ASSET_EXCLUDE,
        ignore_mode=IgnoreMode.DOCKER,
        build_args={"BASE_IMAGE": base_image} if base_image else None,
    )
