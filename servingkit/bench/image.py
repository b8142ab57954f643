"""`servingkit bench image`: the Lambda image's figures.

Size, build time (cold and cached), cold start in the container, peak memory.

Compared in the same run, interleaved, `--runs` times each (minimum and median printed, wall and CPU):
- image: `docker run` of the function image → its first answer to a 100-record Kinesis batch, the model
  downloaded from an S3 emulator, verified and loaded (awslambdaric + local Runtime API, as Lambda boots it);
- floor: the same container started with only `import sklearn, skops.io` and a load of the same model file;
- in-process: a fresh interpreter on the host that imports the handler and scores the same batch (as
  `servingkit bench coldstart`, without the container).
CPU is that of the function's process (host /proc for the container, getrusage inside the floor, wait4 for
the host child). The base is the local stand-in unless SERVINGKIT_BASE_IMAGE names AWS's. Last line: JSON.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servingkit.bench import ROOT, BenchError
from servingkit.bench.util import run_sampled

if TYPE_CHECKING:
    from servingkit.image.build import BuiltImage
    from servingkit.image.engine import DockerEngine
    from servingkit.localcloud.image_function import ImageFunction
    from servingkit.localcloud.resources import ExportedModel

FLOOR = r"""
import json, resource, sys, time
began = time.perf_counter()
import sklearn
import skops.io as sio
model = sio.load(sys.argv[1], trusted=["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"])
use = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"cpu": use.ru_utime + use.ru_stime, "peak": use.ru_maxrss * 1024}))
"""

IN_PROCESS = r"""
import json, sys
from lambda_fn.handler import stream_handler
from servingkit.lambda_context import LambdaContext
response = stream_handler(json.load(open(sys.argv[1])), LambdaContext(timeout_ms=300_000))
assert response == {"batchItemFailures": []}, response
"""


def _stats(values: list[float]) -> str:
    return f"{min(values):8.2f} {statistics.median(values):8.2f}"


Sample = tuple[float, float, float]  # one cold start: wall seconds, CPU seconds, peak MiB


def run(runs: int = 5, batch: int = 100, cold_build: bool = True) -> dict[str, Any]:
    """The figures of the module's docstring (`cold_build=False` skips the --no-cache build: minutes).
    Raises EngineError when the Docker engine or a build fails, BenchError when the host child fails."""

    from servingkit.events import kinesis_event
    from servingkit.image.engine import start_engine
    from servingkit.localcloud.image_session import host_architecture
    from servingkit.localcloud.resources import ExportedModel
    from servingkit.taxi import ride_events

    release = ExportedModel.load()
    event = kinesis_event(list(ride_events(batch)), key_field="ride_id")
    event_path = ROOT / "build" / "bench-image-event.json"
    event_path.write_text(json.dumps(event))
    figures: dict[str, Any] = {"runs": runs, "batch": batch, "arch": host_architecture()}
    warm_ms: list[float] = []
    engine = start_engine()
    try:
        image = _build_images(engine, cold_build, figures)
        rows = _cold_starts(engine, image, release, event, event_path, runs, warm_ms)
    finally:
        engine.stop()
        subprocess.run(["rm", "-rf", *map(str, (ROOT / "build").glob("bench-image-cache-*"))], check=False)
    _summarize(rows, figures)
    figures["warm_batch_ms_median"] = round(statistics.median(warm_ms), 1)
    _ratios(figures)
    print(
        f"image {figures['image_mib']} MiB (dependency layer {figures['dependency_layer_mib']} MiB, base "
        f"{figures['base_mib']} MiB); build cold {figures.get('build_cold_seconds')} s, cached "
        f"{figures['build_cached_seconds']} s; warm batch median {figures['warm_batch_ms_median']} ms"
    )
    return figures


def _build_images(engine: DockerEngine, cold_build: bool, figures: dict[str, Any]) -> BuiltImage:
    """The base stand-in, then the function image (cold if asked, then cached): times and sizes into `figures`."""
    from servingkit.image.build import DOCKER_PLATFORMS, build_function_image
    from servingkit.image.standin import build_standin
    from servingkit.localcloud.image_session import host_architecture

    began = time.perf_counter()
    base = build_standin(engine, progress=lambda line: print(line, flush=True))
    figures["base_image"] = base
    figures["base_seconds"] = round(time.perf_counter() - began, 1)
    platform = DOCKER_PLATFORMS[host_architecture()]
    if cold_build:
        print("cold build (--no-cache) ...", flush=True)
        cold = build_function_image(engine, base, platform=platform, no_cache=True, tag="servingkit/function:bench")
        figures["build_cold_seconds"] = round(cold.seconds, 1)
    cached = build_function_image(engine, base, platform=platform, tag="servingkit/function:bench")
    figures["build_cached_seconds"] = round(cached.seconds, 2)
    deps = max((size for step, size in cached.layers if "pip install" in step), default=0)
    figures["image_mib"] = round(cached.size_bytes / 2**20)
    figures["dependency_layer_mib"] = round(deps / 2**20)
    figures["base_mib"] = round(cached.layers[0][1] / 2**20) if cached.layers else None
    return cached


def _cold_starts(
    engine: DockerEngine,
    image: BuiltImage,
    release: ExportedModel,
    event: dict[str, Any],
    event_path: Path,
    runs: int,
    warm_ms: list[float],
) -> dict[str, list[Sample]]:
    """`runs` rounds, interleaved: the image, the floor, the in-process child; warm batch medians into `warm_ms`."""
    import boto3

    from infra.topology import topology
    from servingkit.localcloud.emulator import endpoint_environment, pointed_at, start_emulator
    from servingkit.localcloud.image_session import ImageSession
    from servingkit.localcloud.resources import provision

    with start_emulator() as emulator, pointed_at(emulator.endpoint_url):
        clients = {name: boto3.client(name) for name in ("kinesis", "sqs", "s3")}
        ctx = {"stage": "bench"}
        resources = provision(topology(ctx), release, clients, "us-east-1")
        env = {**resources.environment, **endpoint_environment(emulator.endpoint_url)}
        session = ImageSession(engine=engine, image=image, workdir=ROOT / "build")
        host_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MODEL_", "AWS_ENDPOINT"))},
            **env,
            "POWERTOOLS_METRICS_DISABLED": "true",
        }
        rows: dict[str, list[Sample]] = {"image": [], "floor": [], "in-process": []}
        for i in range(runs):
            fn = session.scorer(env, ctx, name="bench-scorer")
            try:
                rows["image"].append(_image_cold_start(fn, event, warm_ms))
            finally:
                fn.stop()
            rows["floor"].append(_floor(engine, image, release, fn.spec.memory_mb))
            host_env["MODEL_CACHE_DIR"] = str(ROOT / "build" / f"bench-image-cache-{time.time_ns()}")
            rows["in-process"].append(_in_process(host_env, event_path))
            print(
                f"run {i + 1}/{runs}: "
                + ", ".join(f"{k} {v[-1][0]:.2f}s cpu {v[-1][1]:.2f}s {v[-1][2]:.0f} MiB" for k, v in rows.items()),
                flush=True,
            )
    return rows


def _image_cold_start(fn: ImageFunction, event: dict[str, Any], warm_ms: list[float]) -> Sample:
    """The function's first answer (its cold start), then the median of 5 warm batches into `warm_ms`."""
    answer = fn(event)
    assert answer == {"batchItemFailures": []}, answer
    cold_env = fn.cold_starts[0]
    usage = fn.process_usage() or (0, 0.0)
    assert cold_env.first_response_seconds is not None
    sample = (cold_env.first_response_seconds, usage[1], usage[0] / 2**20)
    warm = [time.perf_counter()]
    for _ in range(5):
        fn(event)
        warm.append(time.perf_counter())
    warm_ms.append(round(1000 * statistics.median(b - a for a, b in itertools.pairwise(warm)), 1))
    return sample


def _floor(engine: DockerEngine, image: BuiltImage, release: ExportedModel, memory_mb: int) -> Sample:
    t0 = time.perf_counter()
    done = engine.docker(
        "run", "--rm", "--network=host", "--read-only", "--user", "993:990",
        "--memory", f"{memory_mb}m", "-v", f"{release.model_dir}:/opt/model:ro",
        "--entrypoint", "/var/lang/bin/python3", image.tag, "-c", FLOOR, "/opt/model/model.skops",
    )  # fmt: skip
    floor = json.loads(done.stdout.strip().splitlines()[-1])
    return (time.perf_counter() - t0, floor["cpu"], floor["peak"] / 2**20)


def _in_process(host_env: dict[str, str], event_path: Path) -> Sample:
    child = run_sampled([sys.executable, "-c", IN_PROCESS, str(event_path)], host_env, cwd=ROOT, interval=None)
    if child.returncode != 0:
        raise BenchError(f"in-process child failed:\n{child.stderr[-3000:]}")
    cpu = child.rusage.ru_utime + child.rusage.ru_stime
    return (child.seconds, cpu, child.rusage.ru_maxrss / 1024)


def _summarize(rows: dict[str, list[Sample]], figures: dict[str, Any]) -> None:
    """Print the cold-start table; minima and medians into `figures`."""
    print(f"\n{'cold start':12}{'wall min':>9}{'median':>9}{'cpu min':>9}{'median':>9}{'peak MiB':>10}")
    for name, values in rows.items():
        walls, cpus, peaks = ([v[0] for v in values], [v[1] for v in values], [v[2] for v in values])
        print(f"{name:12}{_stats(walls)} {_stats(cpus)} {statistics.median(peaks):9.0f}")
        figures[name] = {
            "wall_min": round(min(walls), 3),
            "wall_median": round(statistics.median(walls), 3),
            "cpu_min": round(min(cpus), 3),
            "cpu_median": round(statistics.median(cpus), 3),
            "peak_mib_median": round(statistics.median(peaks)),
        }


def _ratios(figures: dict[str, Any]) -> None:
    figures["image_vs_floor_cpu_ratio_of_minima"] = round(figures["image"]["cpu_min"] / figures["floor"]["cpu_min"], 2)
    figures["image_vs_floor_wall_ratio_of_minima"] = round(
        figures["image"]["wall_min"] / figures["floor"]["wall_min"], 2
    )
    figures["image_vs_in_process_wall_ratio_of_minima"] = round(
        figures["image"]["wall_min"] / figures["in-process"]["wall_min"], 2
    )
