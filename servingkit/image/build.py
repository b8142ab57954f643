"""Build the function image as `cdk deploy` does: the Dockerfile on a clean build context, BASE_IMAGE as a build arg.

The context is either the CDK asset staged by `cdk synth` (cdk.out/asset.<hash>/, what deploy really
builds) or a clean copy of the tree's tracked and unignored files (for the demo), never the work tree
itself, so nothing left lying around (a venv, models, caches) can reach the image.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from servingkit.image.engine import DockerEngine
from servingkit.image.platform import ROOT

DOCKER_PLATFORMS = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}


@dataclass(frozen=True, slots=True)
class BuiltImage:
    tag: str
    seconds: float
    size_bytes: int
    layers: list[tuple[str, int]]  # (the instruction that made it, its size), oldest first

    @property
    def largest_layer(self) -> tuple[str, int]:
        return max(self.layers, key=lambda layer: layer[1])


def clean_copy(dest: Path, root: Path = ROOT) -> Path:
    """Copy the files git tracks or would track (`.gitignore` applied), as they are in the work tree."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        rel = raw.decode()
        src = root / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def asset_context(cdk_out: Path, stack: str) -> tuple[Path, str, dict[str, str], str | None]:
    """The image asset of a synthesized stack: its staged folder, Dockerfile, build args and platform."""
    manifest = json.loads((cdk_out / f"{stack}.assets.json").read_text())
    (image,) = manifest["dockerImages"].values()
    source = image["source"]
    return (
        cdk_out / source["directory"],
        source.get("dockerFile", "Dockerfile"),
        dict(source.get("dockerBuildArgs") or {}),
        source.get("platform"),
    )


def inspect_image(engine: DockerEngine, tag: str) -> tuple[int, list[tuple[str, int]]]:
    size = int(engine.docker("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())
    history = engine.docker("history", "--no-trunc", "--human=false", "--format", "{{.Size}}\t{{.CreatedBy}}", tag)
    layers = []
    for line in reversed(history.stdout.strip().splitlines()):
        layer_size, _, created_by = line.partition("\t")
        layers.append((created_by.replace("/bin/sh -c ", "").strip(), int(layer_size)))
    return size, layers


def build_function_image(
    engine: DockerEngine,
    base: str,
    *,
    context: Path | None = None,
    dockerfile: str = "Dockerfile",
    build_args: dict[str, str] | None = None,
    platform: str | None = None,
    tag: str = "servingkit/function:local",
    no_cache: bool = False,
) -> BuiltImage:
    """`docker build` of the function image on `base` (the BASE_IMAGE build arg, as `-c base_image` passes it)."""
    args = {**(build_args or {}), "BASE_IMAGE": base}
    with tempfile.TemporaryDirectory(prefix="fn-context-") as tmp:
        where = context or clean_copy(Path(tmp))
        cmd = ["build", "--network=host", "-f", str(where / dockerfile), "-t", tag]
        for key, value in args.items():
            cmd += ["--build-arg", f"{key}={value}"]
        if platform:
            cmd += ["--platform", platform]
        if no_cache:
            cmd.append("--no-cache")
        began = time.perf_counter()
        engine.docker(*cmd, str(where), timeout=1800)
        seconds = time.perf_counter() - began
    size, layers = inspect_image(engine, tag)
    return BuiltImage(tag=tag, seconds=seconds, size_bytes=size, layers=layers)
