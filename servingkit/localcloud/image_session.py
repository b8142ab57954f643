"""`--image` runs of the local cloud: an engine, the base, the function image built from a clean copy, functions.

The demo, `serve` and the image benchmark use this; the image tier builds from the CDK-staged asset
instead (what `cdk deploy` builds), with the same engine, base and runner.
"""

from __future__ import annotations

import platform
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.settings import DeploySettings, FunctionSizing, deploy_settings
from infra.topology import API_HANDLER, STREAM_HANDLER, Ctx
from lambda_fn.config import Env
from servingkit.image.build import DOCKER_PLATFORMS, BuiltImage, build_function_image
from servingkit.image.engine import DockerEngine, start_engine
from servingkit.image.standin import build_standin
from servingkit.localcloud.image_function import FunctionSpec, ImageFunction

Progress = Callable[[str], None]


def host_architecture() -> str:
    """The Lambda architecture this machine runs natively (the image is built for it)."""
    return "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"


def sizing_for(ctx: Mapping[str, Any], environment: Mapping[str, str]) -> DeploySettings:
    """The deploy settings (memory, timeout) the stack would give these functions, from the same context."""
    model = {Ctx.MODEL_URI: environment[Env.MODEL_URI].rstrip("/"), Ctx.MODEL_SHA256: environment[Env.MODEL_SHA256]}
    return deploy_settings({**ctx, **model})


@dataclass
class ImageSession:
    engine: DockerEngine
    image: BuiltImage
    workdir: Path

    def function(
        self, handler: str, environment: Mapping[str, str], *, name: str, sizing: FunctionSizing
    ) -> ImageFunction:
        spec = FunctionSpec(
            handler=handler,
            environment=dict(environment),
            function_name=name,
            memory_mb=sizing.memory_mb,
            timeout_s=float(sizing.timeout_seconds),
        )
        return ImageFunction(engine=self.engine, image=self.image.tag, spec=spec, workdir=self.workdir)

    def scorer(self, environment: Mapping[str, str], ctx: Mapping[str, Any], name: str) -> ImageFunction:
        return self.function(STREAM_HANDLER, environment, name=name, sizing=sizing_for(ctx, environment).scorer)

    def api(self, environment: Mapping[str, str], ctx: Mapping[str, Any], name: str) -> ImageFunction:
        return self.function(API_HANDLER, environment, name=name, sizing=sizing_for(ctx, environment).api)


@contextmanager
def image_session(progress: Progress = print) -> Iterator[ImageSession]:
    """Start a Docker engine, build the base (stand-in or $SERVINGKIT_BASE_IMAGE) and the function image."""
    engine = start_engine()
    try:
        base = build_standin(engine, progress=progress)
        progress(f"building the function image on {base} (Dockerfile, clean copy of the tree)")
        built = build_function_image(engine, base, platform=DOCKER_PLATFORMS[host_architecture()])
        progress(f"function image {built.tag}: {built.size_bytes / 2**20:.0f} MiB, built in {built.seconds:.1f} s")
        with tempfile.TemporaryDirectory(prefix="servingkit-image-") as tmp:
            yield ImageSession(engine=engine, image=built, workdir=Path(tmp))
    finally:
        engine.stop()
