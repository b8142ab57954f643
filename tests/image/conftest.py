"""Fixtures of the image tier: a Docker engine of its own, the base image, the function image as deploy builds it.

The engine is installed and started here and stopped by process id at the end of the session. The base
is the local stand-in for AWS's Lambda Python image, or `SERVINGKIT_BASE_IMAGE` where a registry is
reachable (the tests are the same). The function image is built from the CDK asset that `cdk synth`
staged, with the asset's own build arguments, and each function's CMD, memory and timeout are read from
the synthesized template.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from infra.topology import topology
from servingkit.image.build import DOCKER_PLATFORMS, BuiltImage, asset_context, build_function_image
from servingkit.image.engine import DockerEngine, start_engine
from servingkit.image.standin import build_standin
from servingkit.localcloud.emulator import endpoint_environment, pointed_at, start_emulator
from servingkit.localcloud.image_function import FunctionSpec, ImageFunction
from servingkit.localcloud.image_session import host_architecture
from servingkit.localcloud.resources import ExportedModel, Resources, provision
from tests.infra.synth import Synth, synth

STACK = "ServingKit-dev"


def _say(line: str) -> None:
    print(f"[image tier] {line}", file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def engine() -> Iterator[DockerEngine]:
    engine = start_engine()
    _say(f"Docker engine on {engine.host}")
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def base_image(engine: DockerEngine) -> str:
    return build_standin(engine, progress=_say)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synth("default", tmp_path_factory.mktemp("cdk"))


@dataclass(frozen=True)
class TemplateFunction:
    """What the template declares for one function."""

    handler: str
    memory_mb: int
    timeout_s: int
    architecture: str
    variables: dict[str, Any]


def template_function(stack: Synth, suffix: str) -> TemplateFunction:
    (props,) = [
        f["Properties"]
        for f in stack.resources("AWS::Lambda::Function").values()
        if str(f["Properties"].get("FunctionName", "")).endswith(suffix)
    ]
    (handler,) = props["ImageConfig"]["Command"]
    return TemplateFunction(
        handler=handler,
        memory_mb=int(props["MemorySize"]),
        timeout_s=int(props["Timeout"]),
        architecture=props.get("Architectures", ["x86_64"])[0],
        variables=props["Environment"]["Variables"],
    )


@pytest.fixture(scope="session")
def scorer(stack: Synth) -> TemplateFunction:
    return template_function(stack, "-scorer")


@pytest.fixture(scope="session")
def api(stack: Synth) -> TemplateFunction:
    return template_function(stack, "-api")


@pytest.fixture(scope="session")
def function_image(engine: DockerEngine, base_image: str, stack: Synth) -> BuiltImage:
    """The staged asset built on `base_image`, for this machine's architecture (the template's may differ:
    the stack defaults to arm64, which this machine cannot run; see README, 'The image')."""
    context, dockerfile, args, _template_platform = asset_context(stack.outdir, STACK)
    arch = host_architecture()
    built = build_function_image(
        engine,
        base_image,
        context=context,
        dockerfile=dockerfile,
        build_args=args,
        platform=DOCKER_PLATFORMS[arch],
        tag="servingkit/function:cdk-asset",
    )
    _say(f"built {built.tag}: {built.size_bytes / 2**20:.0f} MiB in {built.seconds:.1f} s")
    return built


@pytest.fixture
def run_function(engine: DockerEngine, function_image: BuiltImage, tmp_path: Path) -> Iterator[Any]:
    """Make `ImageFunction`s of the built image; every container is removed at the end of the test."""
    made: list[ImageFunction] = []

    def make(fn: TemplateFunction, environment: dict[str, str], name: str = "serving-local-fn") -> ImageFunction:
        spec = FunctionSpec(
            handler=fn.handler,
            environment=environment,
            function_name=name,
            memory_mb=fn.memory_mb,
            timeout_s=float(fn.timeout_s),
        )
        image_fn = ImageFunction(engine=engine, image=function_image.tag, spec=spec, workdir=tmp_path)
        made.append(image_fn)
        return image_fn

    try:
        yield make
    finally:
        for image_fn in made:
            image_fn.stop()


@dataclass
class Provisioned:
    release: ExportedModel
    resources: Resources
    clients: dict[str, Any]
    environment: dict[str, str]


@pytest.fixture
def provisioned(release: tuple[Path, Path]) -> Iterator[Provisioned]:
    """The stack's resources on a fresh emulator, the demo model uploaded; no event source mapping."""
    the_release = ExportedModel.load(*release)
    with start_emulator() as emulator, pointed_at(emulator.endpoint_url):
        clients = {name: boto3.client(name) for name in ("kinesis", "sqs", "s3")}
        resources = provision(topology({"stage": "local"}), the_release, clients, "us-east-1")
        environment = {**resources.environment, **endpoint_environment(emulator.endpoint_url)}
        yield Provisioned(the_release, resources, clients, environment)
