"""`servingkit bench all`: every comparison in one run, one JSON file, one chart.

Sections, each measured with servingkit.bench.measure (CPU beside wall, interleaved, repeated, min and median):
stream (kit vs floor, tutorial loop, Powertools BatchProcessor), coldstart (kit vs import-and-load floor, and
in the container when a Docker engine can start), api (MLflow's scoring server vs the kit's local server vs
the in-process handler), batch (floor, local engine, `mlflow models predict`, Spark engine, `spark_udf`),
single_row (where one-row predict time goes, and the fast path). Targets are CPU ratios of minima.

The JSON (schema "servingkit-bench/1"):
  {"schema", "created", "quick", "repeats", "machine": {cpus, load_average, python, platform, ...},
   "versions": {distribution: version}, "sections": {name: figures | {"skipped": reason}},
   "targets": [{"name", "ratio", "limit", "at_least", "met", "margin"}], "seconds"}
Times in a section's "cpu_min"/"cpu_median"/"wall_min"/"wall_median" carry their "unit" (ms or s).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from servingkit.bench.measure import SCHEMA, Target, machine, strict_json, versions

VERSIONS = ("servingkit", "mlflow", "scikit-learn", "pandas", "numpy", "pyspark", "aws-lambda-powertools",
            "uvicorn", "skops", "boto3")  # fmt: skip
SECTIONS = ("stream", "coldstart", "api", "batch", "single_row")


@dataclass(frozen=True)
class Plan:
    """How much of everything to run: `quick` is the smoke run (seconds; the heavy peers left out)."""

    repeats: int = 5
    quick: bool = False
    container: bool = True  # the cold start inside the image (needs a Docker engine; minutes)
    # Overrides for one section (`servingkit bench stream --sizes`, `bench batch --rows`, ...); None: the plan's.
    sizes: tuple[int, ...] | None = None  # stream batch sizes (the 10,000-record target is judged when present)
    rows: int | None = None  # batch rows
    requests: int | None = None  # api requests per configuration and round
    spark: bool = True  # batch: the Spark engine and spark_udf

    @property
    def stream(self) -> dict[str, Any]:
        if self.quick:
            return {"sizes": self.sizes or (1000,), "peer_size": 10, "repeats": 2}
        return {"sizes": self.sizes or (1000, 10000), "peer_size": 200, "repeats": self.repeats}

    @property
    def coldstart_runs(self) -> int:
        return 1 if self.quick else self.repeats

    @property
    def api(self) -> dict[str, Any]:
        if self.quick:
            return {"repeats": 1, "requests": self.requests or 8, "peers": False}
        return {"repeats": max(2, self.repeats // 2), "requests": self.requests or 200, "peers": True}

    @property
    def batch(self) -> dict[str, Any]:
        if self.quick:
            return {"rows": self.rows or 2_000, "repeats": 1, "spark": False, "mlflow": False}
        return {"rows": self.rows or 1_000_000, "repeats": max(2, self.repeats // 2), "spark": self.spark,
                "mlflow": True}  # fmt: skip


def _stream(plan: Plan, progress: Callable[[str], None]) -> dict[str, Any]:
    from servingkit.bench.stream import compare

    return compare(**plan.stream, progress=progress)


def _coldstart(plan: Plan, progress: Callable[[str], None]) -> dict[str, Any]:
    from servingkit.bench.coldstart import run

    figures = run(runs=plan.coldstart_runs, progress=progress)
    figures["container"] = _container(plan)
    return figures


def _container(plan: Plan) -> dict[str, Any]:
    """The image bench (servingkit.bench.image), cached build only; skipped with the reason when it cannot run."""
    if plan.quick or not plan.container:
        return {"skipped": "--quick" if plan.quick else "--skip-container"}
    from servingkit.bench import BenchError
    from servingkit.bench import image as bench_image
    from servingkit.image.engine import EngineError

    try:
        figures = bench_image.run(runs=plan.coldstart_runs, cold_build=False)
    except (EngineError, BenchError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"container cold start skipped: {reason}", file=sys.stderr)
        return {"skipped": reason}
    ratio = figures["image_vs_floor_cpu_ratio_of_minima"]
    figures["targets"] = [Target("cold start in the container: image / floor in the image (CPU)", ratio, 1.3)]
    return figures


def _api(plan: Plan, progress: Callable[[str], None]) -> dict[str, Any]:
    from servingkit.bench.api_peers import run

    return run(**plan.api, progress=progress)


def _batch(plan: Plan, progress: Callable[[str], None]) -> dict[str, Any]:
    from servingkit.bench.batch_peers import run

    return run(**plan.batch, progress=progress)


def _single_row(plan: Plan, progress: Callable[[str], None]) -> dict[str, Any]:
    from servingkit.bench.single_row import run

    if plan.quick:
        return run(repeats=2, calls=20, check_rows=50)
    return run(repeats=plan.repeats, calls=200, check_rows=2000)


RUNNERS: dict[str, Callable[[Plan, Callable[[str], None]], dict[str, Any]]] = {
    "stream": _stream,
    "coldstart": _coldstart,
    "api": _api,
    "batch": _batch,
    "single_row": _single_row,
}


def _postfix(bar: Any, section: str, line: str) -> None:
    bar.set_postfix_str(f"{section}: {line}")


def _targets(value: Any) -> list[Target]:
    """Every Target in a section's figures, nested sections included."""
    if isinstance(value, Target):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _targets(v)]
    if isinstance(value, list):
        return [t for v in value for t in _targets(v)]
    return []


def _jsonable(value: Any) -> Any:
    if isinstance(value, Target):
        return value.as_dict()
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def run(out: Path, chart: Path, plan: Plan, sections: tuple[str, ...] = SECTIONS) -> dict[str, Any]:
    """Run `sections`, write the JSON to `out` and the chart to `chart`; progress on stderr (tqdm)."""
    from tqdm import tqdm

    started = time.perf_counter()
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": plan.quick,
        "repeats": plan.repeats,
        "machine": machine(),
        "versions": versions(VERSIONS),
        "sections": {},
    }
    targets: list[Target] = []
    with tqdm(sections, desc="bench", unit="section", file=sys.stderr) as bar:
        for name in bar:
            bar.set_description(f"bench {name}")
            figures = RUNNERS[name](plan, partial(_postfix, bar, name))
            targets += _targets(figures)
            report["sections"][name] = _jsonable(figures)
    report["targets"] = [t.as_dict() for t in targets]
    report["seconds"] = round(time.perf_counter() - started, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(strict_json(report, indent=1) + "\n")
    from servingkit.bench.chart import draw

    draw(report, chart)
    print("\ntargets (CPU-time ratios of minima of interleaved runs):")
    for t in targets:
        print(f"  {t.line()}")
    print(f"figures: {out}; chart: {chart}")
    return report
