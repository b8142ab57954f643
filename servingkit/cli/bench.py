"""`servingkit bench ...`: the benchmarks, each against a floor measured in the same run (last line: JSON)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from servingkit.bench.suite import SECTIONS
from servingkit.cli.errors import CommandError


def _sizes(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in value.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"{value!r}: expected positive integers separated by commas", ctx=ctx, param=param)
    return sizes


def _report(measure: Callable[[], dict[str, Any]], *, missing_model_exit: int = 2, prefix: str | None = None) -> None:
    """Run one benchmark; print its figures as the last line, or its error on one line."""
    from servingkit.bench import BenchError
    from servingkit.train import MissingModelError

    try:
        figures = measure()
    except MissingModelError as exc:
        raise CommandError(str(exc), exit_code=missing_model_exit, prefix=prefix) from exc
    except BenchError as exc:
        raise CommandError(str(exc), prefix=None) from exc
    from servingkit.bench.measure import Target

    click.echo(json.dumps(figures, default=lambda o: o.as_dict() if isinstance(o, Target) else str(o)))


@click.group()
def bench() -> None:
    """Benchmarks: each prints its table, then one JSON object with the figures as the last line.

    `make bench` runs `servingkit bench all`. Most need the demo model (`make model`).
    """


@bench.command()
@click.option("--sizes", default="100,1000,10000", callback=_sizes, help="Batch sizes, comma-separated.")
@click.option("--repeats", type=click.IntRange(min=1), default=5, help="Timed runs per size (median kept).")
@click.option(
    "--tutorial-max", type=click.IntRange(min=0), default=1000, help="Largest size for the slow per-record loop."
)
@click.option(
    "--monitoring",
    is_flag=True,
    help="Instead: the handler with capture + profiles on (in-memory S3) vs off, interleaved, CPU min and median "
    "(default sizes 1000,10000, 15 repeats).",
)
@click.option("--capture-rate", type=click.FloatRange(0, 1), default=0.1, help="With --monitoring: the sample rate.")
def stream(sizes: tuple[int, ...], repeats: int, tutorial_max: int, monitoring: bool, capture_rate: float) -> None:
    """Stream scoring throughput: the kit's handler vs the per-record tutorial pattern vs the floor.

    (a) stream_handler end to end on a real Kinesis event (output and DLQ to in-memory sinks); (b) the usual
    tutorial loop: per record decode, hook, predict one row, put one record; (c) the floor: JSON decode of
    the payloads plus one predict call on rows prepared beforehand. Same demo model, same ride events.
    """
    from servingkit.bench import stream as bench_stream

    if monitoring:
        ctx = click.get_current_context()
        default = ctx.get_parameter_source("sizes") == click.core.ParameterSource.DEFAULT
        chosen = (1000, 10000) if default else sizes
        runs = 15 if ctx.get_parameter_source("repeats") == click.core.ParameterSource.DEFAULT else repeats
        _report(lambda: bench_stream.run_monitoring(sizes=chosen, repeats=runs, rate=capture_rate))
        return
    _report(lambda: bench_stream.run(sizes=sizes, repeats=repeats, tutorial_max=tutorial_max))


@bench.command()
@click.option("--runs", type=click.IntRange(min=1), default=5, help="Fresh processes of each kind (median kept).")
@click.option("--batch", type=click.IntRange(min=1), default=100, help="Records in the first batch.")
def coldstart(runs: int, batch: int) -> None:
    """Cold start: a fresh process imports the handler, loads the model from an S3 emulator, scores a batch.

    Compared with the floor: a fresh process that only imports scikit-learn (and skops) and loads the same
    model file from local disk. Wall seconds spawn to exit and the child's peak RSS (wait4), medians.
    """
    from servingkit.bench import coldstart as bench_coldstart

    _report(lambda: bench_coldstart.run(runs=runs, batch=batch))


@bench.command()
@click.option("--sizes", default="500,5000", callback=_sizes, help="Batch sizes, comma-separated.")
@click.option("--repeats", type=click.IntRange(min=1), default=7, help="Timed runs per setup and size (median).")
def rollout(sizes: tuple[int, ...], repeats: int) -> None:
    """What rollout costs a stream batch: primary only vs A/B (two variants) vs primary + shadow.

    The same demo model, ride events and in-memory sinks for all three; ratios against primary only.
    """
    from servingkit.bench import rollout as bench_rollout

    _report(lambda: bench_rollout.run(sizes=sizes, repeats=repeats), missing_model_exit=1, prefix="error")


@bench.command()
@click.option("--requests", type=click.IntRange(min=1), default=1000, help="Timed single-row requests in-process.")
@click.option("--clients", type=click.IntRange(min=1), default=8, help="Concurrent HTTP clients.")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=10.0, help="Duration of the HTTP run.")
@click.option("--cold-start", is_flag=True, help="Also measure router cold start (Powertools vs FastAPI + Mangum).")
@click.option("--cold-runs", type=click.IntRange(min=1), default=5, help="Fresh processes per router (median).")
@click.option(
    "--mangum-path",
    type=click.Path(exists=True, file_okay=False),
    help="A directory holding mangum (pip install --target DIR mangum).",
)
def api(requests: int, clients: int, seconds: float, cold_start: bool, cold_runs: int, mangum_path: str | None) -> None:
    """Sync API latency in-process and throughput over HTTP, next to one predict call on a prepared row.

    Serves the demo model unless MODEL_URI is set; OMP_NUM_THREADS defaults to 1 (set it to change that).
    """
    from servingkit.bench import api as bench_api

    _report(
        lambda: bench_api.run(
            requests=requests,
            clients=clients,
            seconds=seconds,
            cold_start=cold_start,
            cold_runs=cold_runs,
            mangum_path=mangum_path,
        )
    )


@bench.command()
@click.option("--rows", type=click.IntRange(min=1), default=1_000_000, help="Generated rides.")
@click.option("--chunk-size", type=click.IntRange(min=4), default=50_000, help="Rows per chunk.")
@click.option(
    "--repeat", type=click.IntRange(min=1), default=2, help="Runs of the floor and the local engine (best kept)."
)
@click.option("--skip-spark", is_flag=True, help="Do not run the spark engine.")
def batch(rows: int, chunk_size: int, repeat: int, skip_spark: bool) -> None:
    """Batch scoring throughput and peak memory: local and spark engines next to the pandas floor.

    Each run is a separate process; peak memory is that of its whole process tree, sampled from /proc.
    """
    from servingkit.bench import batch as bench_batch

    _report(lambda: bench_batch.run(rows=rows, chunk_size=chunk_size, repeat=repeat, skip_spark=skip_spark))


@bench.command()
@click.option("--runs", type=click.IntRange(min=1), default=5, help="Interleaved runs of each (min and median).")
@click.option("--batch", type=click.IntRange(min=1), default=100, help="Records in the first batch.")
@click.option("--no-cold-build", is_flag=True, help="Skip the --no-cache build (minutes).")
def image(runs: int, batch: int, no_cold_build: bool) -> None:
    """The Lambda image: size, build time (cold and cached), cold start in the container, peak memory.

    Compared with the same container importing only scikit-learn and skops, and with a fresh interpreter on
    the host. Starts its own Docker engine unless SERVINGKIT_DOCKER_HOST names one; the base is the local
    stand-in unless SERVINGKIT_BASE_IMAGE names AWS's (SERVINGKIT_DEBIAN_MIRROR: the stand-in's mirror).
    """
    from servingkit.bench import image as bench_image
    from servingkit.image.engine import EngineError

    try:
        _report(lambda: bench_image.run(runs=runs, batch=batch, cold_build=not no_cold_build))
    except EngineError as exc:
        raise CommandError(str(exc)) from exc


FAULTS = ("pause", "stop", "kill", "restart")  # servingkit.localcloud.fault_injection.FAULTS, PHASES (a test checks)
PHASES = ("producing", "reading back")


@bench.command()
@click.option("--records", type=click.IntRange(min=1), default=2_000, help="Records the demo produces.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=400.0, help="Producer pace, records/s.")
@click.option("--pause", type=click.FloatRange(min=0), default=4.0, help="Seconds the emulator stays paused.")
@click.option("--faults", type=click.Choice(FAULTS), multiple=True, help="A fault to inject (repeat it; default: all).")
@click.option("--phases", type=click.Choice(PHASES), multiple=True, help="When to inject (repeat it; default: both).")
def faults(records: int, rate: float, pause: float, faults: tuple[str, ...], phases: tuple[str, ...]) -> None:
    """The demo against a moto server child that is paused, stopped, killed or restarted mid-run.

    For each: the demo's exit status, its ledger, duplicates, records never acknowledged, the reason it
    printed, and whether any traceback appeared.
    """
    from servingkit.bench import faults as bench_faults

    _report(
        lambda: bench_faults.run(
            records=records, rate=rate, pause=pause, faults=faults or FAULTS, phases=phases or PHASES
        )
    )


@bench.command()
@click.option("--runs", type=click.IntRange(min=1), default=3, help="Fresh processes per configuration (median).")
@click.option("--skip-tests", is_flag=True, help="Do not time the infra test tier.")
def synth(runs: int, skip_tests: bool) -> None:
    """Synth cost of the CDK app: cold and warm synth seconds, peak memory, and the infra tier's wall time.

    Compared with a one-bucket stack and with cdk-nag off; JSII_NODE chooses the Node.js that jsii runs on.
    """
    from servingkit.bench import synth as bench_synth

    _report(lambda: bench_synth.run(runs=runs, skip_tests=skip_tests))


@bench.command("all")
@click.option("--repeats", type=click.IntRange(min=1), default=5, help="Interleaved rounds of each comparison.")
@click.option("--quick", is_flag=True, help="The smoke run: tiny sizes, MLflow, Spark and the container left out.")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("build/bench/bench.json"), show_default=True,
    help="The JSON file of every figure (schema servingkit-bench/1).",
)  # fmt: skip
@click.option(
    "--chart", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="The PNG chart [default: the JSON's path with .png].",
)  # fmt: skip
@click.option(
    "--section", "sections", type=click.Choice(SECTIONS), multiple=True,
    help="Run only this section (repeat it; default: all).",
)  # fmt: skip
@click.option("--skip-container", is_flag=True, help="Leave out the cold start inside the image (Docker; minutes).")
def run_all(
    repeats: int, quick: bool, out: Path, chart: Path | None, sections: tuple[str, ...], skip_container: bool
) -> None:
    """Every comparison in one run: stream, cold start, sync API, batch, single row, each against its floor and
    the tools a user would pick instead (MLflow's scoring server, `mlflow models predict`, `spark_udf`, the
    Powertools BatchProcessor pattern), interleaved and repeated; CPU beside wall, min and median.

    Writes one JSON file and one PNG chart, prints every target (CPU ratio of minima) met or missed with its
    margin; progress on stderr. A Docker engine is needed for the container cold start (skipped, with the
    reason, when it cannot start). Needs the demo model (`make model`).
    """
    from servingkit.bench.suite import Plan
    from servingkit.bench.suite import run as run_suite

    plan = Plan(repeats=repeats, quick=quick, container=not skip_container)
    _report(lambda: {"out": str(out), "targets": run_suite(out, chart or out.with_suffix(".png"), plan,
                                                            sections or SECTIONS)["targets"]})  # fmt: skip
