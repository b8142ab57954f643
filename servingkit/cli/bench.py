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
    from servingkit.bench.measure import strict_json

    click.echo(strict_json(figures))


@click.group()
def bench() -> None:
    """Benchmarks: each prints its table, then one JSON object with the figures as the last line.

    `make bench` runs `servingkit bench all`; `bench stream|coldstart|api|batch|single-row` run one of its sections
    (the same code, one JSON file and chart each). Most need the demo model (`make model`).
    """


def _section_options(name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The options every single-section command shares with `bench all`: rounds, smoke run, where to write."""

    def decorate(fn: Callable[..., None]) -> Callable[..., None]:
        fn = click.option("--chart", type=click.Path(dir_okay=False, path_type=Path), default=None,
                          help="The PNG chart [default: the JSON's path with .png].")(fn)  # fmt: skip
        fn = click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
                          default=Path(f"build/bench/{name}.json"), show_default=True,
                          help="The JSON file of this section's figures (schema servingkit-bench/1).")(fn)  # fmt: skip
        fn = click.option("--quick", is_flag=True, help="The smoke run's sizes (as `bench all --quick`).")(fn)
        return click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True,
                            help="Interleaved rounds (as `bench all --repeats`).")(fn)  # fmt: skip

    return decorate


def _run_sections(sections: tuple[str, ...], out: Path, chart: Path | None, **plan: Any) -> None:
    """`bench all --section ...`: the one implementation every figure comes from."""
    from servingkit.bench.suite import Plan
    from servingkit.bench.suite import run as run_suite

    _report(lambda: {"out": str(out), "targets": run_suite(out, chart or out.with_suffix(".png"), Plan(**plan),
                                                            sections)["targets"]})  # fmt: skip


@bench.command()
@_section_options("stream")
@click.option("--sizes", default=None, callback=lambda c, p, v: None if v is None else _sizes(c, p, v),
              help="Batch sizes of the kit-vs-floor runs, comma-separated [default: 1000,10000; --quick: 1000; "
                   "with --monitoring: 1000,10000].")  # fmt: skip
@click.option(
    "--monitoring",
    is_flag=True,
    help="Instead: the handler with capture + profiles on (in-memory S3) vs off, interleaved, CPU and wall, "
    "min and median (default 15 repeats).",
)
@click.option("--capture-rate", type=click.FloatRange(0, 1), default=0.1, help="With --monitoring: the sample rate.")
def stream(repeats: int, quick: bool, out: Path, chart: Path | None, sizes: tuple[int, ...] | None,
           monitoring: bool, capture_rate: float) -> None:  # fmt: skip
    """Stream scoring: `bench all --section stream` (the kit's handler vs the floor, vs the tutorial loop and the
    Powertools BatchProcessor pattern), interleaved; CPU beside wall, min and median; one JSON file and chart.

    The floor: per record base64 and an orjson decode, the same feature hook, one predict, an orjson encode per
    output; the former floor (json.loads + one predict on rows prepared beforehand) is reported beside it.
    `--monitoring` measures instead what capture + profiles add to the handler (printed; its last line is the JSON).
    """
    if monitoring:
        from servingkit.bench import stream as bench_stream

        ctx = click.get_current_context()
        runs = 15 if ctx.get_parameter_source("repeats") == click.core.ParameterSource.DEFAULT else repeats
        chosen = sizes or (1000, 10000)
        _report(lambda: bench_stream.run_monitoring(sizes=chosen, repeats=runs, rate=capture_rate))
        return
    _run_sections(("stream",), out, chart, repeats=repeats, quick=quick, sizes=sizes)


@bench.command()
@_section_options("coldstart")
@click.option("--skip-container", is_flag=True, help="Leave out the cold start inside the image (Docker; minutes).")
def coldstart(repeats: int, quick: bool, out: Path, chart: Path | None, skip_container: bool) -> None:
    """Cold start: `bench all --section coldstart`. A fresh process imports the handler, loads the model from an
    S3 emulator, scores a first batch of 100 records; against the floor, a fresh process that only imports
    scikit-learn (and skops) and loads the same file. Interleaved; CPU (wait4) beside wall, min and median.

    Also inside the image (needs a Docker engine; skipped with the reason when none can start).
    """
    _run_sections(("coldstart",), out, chart, repeats=repeats, quick=quick, container=not skip_container)


@bench.command()
@click.option("--sizes", default="500,5000", callback=_sizes, help="Batch sizes, comma-separated.")
@click.option("--repeats", type=click.IntRange(min=1), default=7, help="Interleaved rounds (min and median).")
def rollout(sizes: tuple[int, ...], repeats: int) -> None:
    """What rollout costs a stream batch: primary only vs A/B (two variants) vs primary + shadow.

    The same demo model, ride events and in-memory sinks for all three, interleaved; CPU beside wall, min and
    median; ratios are CPU ratios of minima against primary only.
    """
    from servingkit.bench import rollout as bench_rollout

    _report(lambda: bench_rollout.run(sizes=sizes, repeats=repeats), missing_model_exit=1, prefix="error")


@bench.command()
@_section_options("api")
@click.option("--requests", type=click.IntRange(min=1), default=None,
              help="Requests per configuration and round [default: 200; --quick: 8].")  # fmt: skip
@click.option("--cold-start", is_flag=True,
              help="Instead: router cold start, Powertools vs FastAPI + Mangum (fresh processes, --repeats each, "
                   "interleaved; printed, last line: JSON).")  # fmt: skip
@click.option(
    "--mangum-path",
    type=click.Path(exists=True, file_okay=False),
    help="With --cold-start: a directory holding mangum (pip install --target DIR mangum).",
)
def api(repeats: int, quick: bool, out: Path, chart: Path | None, requests: int | None, cold_start: bool,
        mangum_path: str | None) -> None:  # fmt: skip
    """Sync API: `bench all --section api`. Single-row `POST /invocations` to MLflow's scoring server, the kit's
    local server and the in-process handler, 1 and 8 clients, keep-alive and new connection per request:
    p50/p99, throughput, server CPU per request; rounds interleaved (half of --repeats, at least 2).

    `--quick` leaves MLflow's server out. One OpenMP thread, as deployed.
    """
    if cold_start:
        from servingkit.bench import routers

        _report(lambda: routers.run(runs=repeats, mangum_path=mangum_path))
        return
    _run_sections(("api",), out, chart, repeats=repeats, quick=quick, requests=requests)


@bench.command()
@_section_options("batch")
@click.option("--rows", type=click.IntRange(min=1), default=None,
              help="Generated rides [default: 1,000,000; --quick: 2,000].")  # fmt: skip
@click.option("--skip-spark", is_flag=True, help="Leave out the Spark engine and spark_udf.")
@click.option("--memory", is_flag=True,
              help="Instead: peak memory of each run's process tree (local engine at two chunk sizes and on 4x "
                   "the data, the floor on 1x and 4x, the hook, Spark), interleaved (printed).")  # fmt: skip
@click.option("--chunk-size", type=click.IntRange(min=4), default=50_000, help="With --memory: rows per chunk.")
def batch(repeats: int, quick: bool, out: Path, chart: Path | None, rows: int | None, skip_spark: bool,
          memory: bool, chunk_size: int) -> None:  # fmt: skip
    """Batch scoring: `bench all --section batch`. The pandas floor, the local engine and `mlflow models predict`
    as whole processes, the Spark engine and `spark_udf` on one local Spark session; interleaved (half of
    --repeats, at least 2); CPU beside wall, min and median.
    """
    if memory:
        from servingkit.bench import batch as bench_batch

        ctx = click.get_current_context()
        runs = 2 if ctx.get_parameter_source("repeats") == click.core.ParameterSource.DEFAULT else repeats
        _report(lambda: bench_batch.run(rows=rows or 1_000_000, chunk_size=chunk_size, repeats=runs,
                                        skip_spark=skip_spark))  # fmt: skip
        return
    _run_sections(("batch",), out, chart, repeats=repeats, quick=quick, rows=rows, spark=not skip_spark)


@bench.command("single-row")
@_section_options("single_row")
def single_row(repeats: int, quick: bool, out: Path, chart: Path | None) -> None:
    """Where one single-row predict's time goes, and the fast path: `bench all --section single_row`."""
    _run_sections(("single_row",), out, chart, repeats=repeats, quick=quick)


@bench.command("monitor")
@click.option("--rows", type=click.IntRange(min=1000), default=1_000_000, show_default=True,
              help="Captured rows the window merges.")  # fmt: skip
@click.option("--profile-rows", type=click.IntRange(min=1), default=500, show_default=True,
              help="Rows per profile object (one per scored batch).")  # fmt: skip
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True, help="Interleaved rounds.")
@click.option("--seeds", type=click.IntRange(min=1), default=200, show_default=True,
              help="Same-distribution windows for the false-positive rate.")  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the figures there as JSON.")  # fmt: skip
def monitor_bench(rows: int, profile_rows: int, repeats: int, seeds: int, out: Path | None) -> None:
    """The monitor's window over ROWS captured rows (parse the profile objects, merge, drift, data quality; and
    from memory), interleaved, CPU beside wall, min and median; its peak traced memory; and the false-positive
    rate of drift and quality on same-distribution traffic over SEEDS windows. No model or emulator needed.
    """
    from servingkit.bench import monitor as bench_monitor
    from servingkit.bench.measure import strict_json

    def measure() -> dict[str, Any]:
        figures = bench_monitor.run(rows=rows, profile_rows=profile_rows, repeats=repeats, seeds=seeds)
        click.echo(bench_monitor.table(figures))
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(strict_json(figures, indent=1) + "\n")
        return figures

    _report(measure)


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


@bench.command()
@click.argument("reports", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The PNG chart to write.")  # fmt: skip
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The merged JSON [default: the chart's path with .json].")  # fmt: skip
def chart(reports: tuple[Path, ...], out: Path, json_out: Path | None) -> None:
    """One chart (and one JSON) from the JSON files of several runs: a section of a later file replaces the
    earlier one's, and each panel of the chart names the run (time, load average) its figures come from.
    """
    from servingkit.bench.chart import draw, merge
    from servingkit.bench.measure import strict_json

    try:
        merged = merge([json.loads(path.read_text()) for path in reports])
    except (ValueError, KeyError, TypeError) as exc:
        raise CommandError(f"cannot merge {', '.join(map(str, reports))}: {exc}") from exc
    json_out = json_out or out.with_suffix(".json")
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(strict_json(merged, indent=1) + "\n")
    draw(merged, out)
    click.echo(json.dumps({"out": str(out), "json": str(json_out), "sources": merged["sources"]}))


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
@click.option("--runs", type=click.IntRange(min=1), default=3, help="Interleaved runs of each (min, median).")
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
    _run_sections(sections or SECTIONS, out, chart, repeats=repeats, quick=quick, container=not skip_container)
