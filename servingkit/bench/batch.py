"""`servingkit bench batch --memory`: batch scoring peak memory (and CPU, wall): local and spark engines next to the
pandas floor. (`servingkit bench batch` without --memory is `bench all --section batch`: servingkit.bench.batch_peers.)

On a generated taxi dataset (servingkit.taxi, default 1,000,000 rows) in the model's columns:
  floor       pandas.read_parquet + one predict on the whole file (no validation, no output written);
  local       the local engine: chunked read, the Lambda's scoring core, Parquet output;
  local-small-chunks  the same with a quarter of the chunk size: memory follows the chunk size;
  local-hook  the same on raw ride columns through FEATURE_HOOK (the demo's taxi_features);
  local-4x    the local engine on four times the data: peak memory must not grow with the dataset
              (floor-4x: the floor on the same four files, whose memory does grow);
  spark       the spark engine on local[2] (mapInPandas, same core).
Each run is a separate process, the runs interleaved (servingkit.bench.measure): CPU from wait4 (the process
and the children it reaped: the local engine's workers, Spark's JVM) beside wall seconds spawn to exit, start-up
and model load included, min and median. Peak memory is the peak resident set of its whole process tree (the JVM
and Python workers included for Spark), sampled from /proc, min and median. The last line is one JSON object.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from servingkit.bench import ROOT, BenchError
from servingkit.bench.measure import Sample, interleave, ratio_of_minima
from servingkit.bench.util import run_sampled

FEATURES = ["PU_DO", "trip_distance", "pickup_hour", "pickup_dow"]


def make_dataset(n: int, root: Path) -> dict[str, Path]:
    """The model-column file and the raw-ride file, with row groups small enough for Spark to split."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from servingkit.taxi import rides

    cols = rides(n, seed=2026)
    ids = pd.Series([f"ride-{i:07d}" for i in range(n)])
    raw = pd.DataFrame({"ride_id": ids, **{k: v for k, v in cols.items() if k != "duration"}})
    when = pd.to_datetime(raw["pickup_datetime"])
    model = pd.DataFrame(
        {
            "ride_id": ids,
            "PU_DO": raw["PULocationID"].astype(str) + "_" + raw["DOLocationID"].astype(str),
            "trip_distance": raw["trip_distance"],
            "pickup_hour": when.dt.hour.astype("int64"),
            "pickup_dow": when.dt.day_of_week.astype("int64"),
        }
    )
    out = {"model": root / "model" / "rides.parquet", "raw": root / "raw" / "rides.parquet"}
    for name, frame in (("model", model), ("raw", raw)):
        out[name].parent.mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), out[name], row_group_size=131_072)
    big = root / "model4"
    big.mkdir()
    for i in range(4):
        shutil.copy(out["model"], big / f"rides-{i}.parquet")
    out["model4"] = big
    return out


def model_env(hook: bool) -> dict[str, str]:
    from servingkit.batch import model_env as env_of

    release = json.loads((ROOT / "build" / "release.json").read_text())
    env = env_of(release=release, MODEL_URI=str(ROOT / "build" / "model"), FEATURES_FIELD="")
    env = {k: v for k, v in env.items() if v}
    if not hook:
        env.pop("FEATURE_HOOK", None)
    return env


# --------------------------------------------------------------------------- one run (child process)


def child(kind: str, data: str, out: str, chunk: int) -> dict[str, Any]:
    from servingkit.batch import JobConfig

    if kind == "floor":
        import pandas as pd

        from lambda_fn.config import settings_from
        from lambda_fn.model_store import load_model

        model = load_model(settings_from(model_env(hook=False)))
        started, cpu = time.perf_counter(), time.process_time()
        frame = pd.read_parquet(data)
        predictions = model.estimator.predict(frame[FEATURES])
        seconds = time.perf_counter() - started
        return {"rows": len(predictions), "seconds": seconds, "cpu_seconds": round(time.process_time() - cpu, 2)}
    config = JobConfig(model_env(hook=kind == "local-hook"))
    if kind == "spark":
        from servingkit.batch.spark import run_spark, session

        spark = session("local[2]", chunk_size=min(chunk, 50_000))
        spark.sparkContext.setLogLevel("ERROR")
        summary = run_spark([data], out, config, spark=spark)
        spark.stop()
    else:
        from servingkit.batch import run_local

        summary = run_local([data], out, config, chunk_size=chunk, progress=False)
    assert summary.rejected == 0, summary.reasons
    return {"rows": summary.rows_in, "seconds": summary.seconds, "cpu_seconds": round(summary.cpu_seconds, 2)}


# --------------------------------------------------------------------------- parent: run and sample memory


def measure(kind: str, data: Path, work: Path, chunk: int, peaks: list[float]) -> Sample:
    """One run in its own process: its CPU (wait4, its worker processes included) and wall seconds spawn to exit;
    the peak RSS of its process tree (MiB, sampled from /proc) into `peaks`."""
    out = work / f"out-{kind}-{chunk}"
    cmd = [sys.executable, "-m", "servingkit.bench.batch", kind, str(data), str(out), str(chunk)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    run = run_sampled(cmd, env, cwd=ROOT)
    if run.returncode != 0:
        raise BenchError(f"{kind} failed:\n{run.stderr[-3000:]}")
    shutil.rmtree(out, ignore_errors=True)
    peaks.append(run.peak_kb / 1024)
    return Sample(run.rusage.ru_utime + run.rusage.ru_stime, run.seconds)


def run(rows: int = 1_000_000, chunk_size: int = 50_000, repeats: int = 2, skip_spark: bool = False) -> dict[str, Any]:
    """Every run of the module's docstring, each in a child process (`python -m servingkit.bench.batch`),
    interleaved `repeats` times (servingkit.bench.measure). Raises BenchError when the demo release is missing or
    a run fails."""
    if not (ROOT / "build" / "release.json").exists():
        raise BenchError("build/release.json is missing: run `make model` first")

    peaks: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        files = make_dataset(rows, work)
        print(f"dataset: {rows:,} rows generated in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        plan = [
            ("floor", "floor", files["model"], chunk_size),
            ("local", "local", files["model"], chunk_size),
            ("local-small-chunks", "local", files["model"], chunk_size // 4),
            ("local-hook", "local-hook", files["raw"], chunk_size),
            ("local-4x", "local", files["model4"], chunk_size),
            ("floor-4x", "floor", files["model4"], chunk_size),
        ]
        if not skip_spark:
            plan.append(("spark", "spark", files["model"], chunk_size))
        runs: dict[str, Callable[[], Sample | None]] = {}
        for name, kind, data, chunk in plan:
            peaks[name] = []
            runs[name] = partial(measure, kind, data, work, chunk, peaks[name])
        series = interleave(runs, repeats, warmup=0, progress=lambda line: print(line, file=sys.stderr, flush=True))
    results = {name: s.summary(scale=1.0) | {"peak_mib": [round(min(p)), round(statistics.median(p))]}
               for (name, s), p in zip(series.items(), peaks.values(), strict=True)}  # fmt: skip
    print(f"\n{'batch, ' + format(rows, ',') + ' rows':24}{'cpu min':>9}{'median':>9}{'wall min':>9}{'median':>9}"
          f"{'peak MiB min':>13}{'median':>8}", file=sys.stderr)  # fmt: skip
    for name, r in results.items():
        print(f"{name:24}{r['cpu_min']:>9.2f}{r['cpu_median']:>9.2f}{r['wall_min']:>9.2f}{r['wall_median']:>9.2f}"
              f"{r['peak_mib'][0]:>13}{r['peak_mib'][1]:>8}", file=sys.stderr)  # fmt: skip
    peak = {name: min(values) for name, values in peaks.items()}
    figures: dict[str, Any] = {
        "rows": rows,
        "chunk_size": chunk_size,
        "repeats": repeats,
        "runs": results,
        "local_cpu_vs_floor": round(ratio_of_minima(series["local"], series["floor"]), 3),
        "local_memory_4x_data_vs_1x": round(peak["local-4x"] / peak["local"], 2),
        "local_memory_vs_floor": round(peak["local"] / peak["floor"], 2),
        "floor_memory_4x_data_vs_1x": round(peak["floor-4x"] / peak["floor"], 2),
    }
    print(f"local engine: {figures['local_cpu_vs_floor']}x the floor's CPU (minima); peak memory on 4x the data: "
          f"{figures['local_memory_4x_data_vs_1x']}x (floor: {figures['floor_memory_4x_data_vs_1x']}x)",
          file=sys.stderr)  # fmt: skip
    return figures


if __name__ == "__main__":  # one measured run, in its own process: KIND DATA OUT CHUNK_SIZE
    kind, data, out, chunk = sys.argv[1:5]
    print(json.dumps(child(kind, data, out, int(chunk))))
