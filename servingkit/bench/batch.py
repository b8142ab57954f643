"""`servingkit bench batch`: batch scoring throughput and peak memory: local and spark engines next to the pandas floor.

On a generated taxi dataset (servingkit.taxi, default 1,000,000 rows) in the model's columns:
  floor       pandas.read_parquet + one predict on the whole file (no validation, no output written);
  local       the local engine: chunked read, the Lambda's scoring core, Parquet output;
  local-small-chunks  the same with a quarter of the chunk size: memory follows the chunk size;
  local-hook  the same on raw ride columns through FEATURE_HOOK (the demo's taxi_features);
  local-4x    the local engine on four times the data: peak memory must not grow with the dataset
              (floor-4x: the floor on the same four files, whose memory does grow);
  spark       the spark engine on local[2] (mapInPandas, same core).
Times are scoring times, after the model is loaded (and, for the local engine, after its worker
processes have started and loaded it); `process_seconds` is each whole run, start-up included.
Wall times depend on what else the machine runs, so CPU times (all threads of the measured process;
the driver's only for Spark) are reported too. Each run is a separate process; peak memory is the
peak resident set of its whole process tree (the JVM and Python workers included for Spark), sampled
from /proc.
The last line is one JSON object with the figures.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from servingkit.bench import ROOT, BenchError
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


def measure(kind: str, data: Path, work: Path, chunk: int) -> dict[str, Any]:
    out = work / f"out-{kind}-{chunk}"
    cmd = [sys.executable, "-m", "servingkit.bench.batch", kind, str(data), str(out), str(chunk)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    run = run_sampled(cmd, env, cwd=ROOT)
    if run.returncode != 0:
        raise BenchError(f"{kind} failed:\n{run.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    result["rows_per_s"] = round(result["rows"] / result["seconds"])
    result["seconds"] = round(result["seconds"], 2)
    result["peak_mb"] = round(run.peak_kb / 1024)
    # The whole process: interpreter, imports, model load (and worker start-up), data, results.
    result["process_seconds"] = round(run.seconds, 2)
    shutil.rmtree(out, ignore_errors=True)
    return result


def run(rows: int = 1_000_000, chunk_size: int = 50_000, repeat: int = 2, skip_spark: bool = False) -> dict[str, Any]:
    """Every run of the module's docstring, each in a child process (`python -m servingkit.bench.batch`).
    Raises BenchError when the demo release is missing or a run fails."""
    if not (ROOT / "build" / "release.json").exists():
        raise BenchError("build/release.json is missing: run `make model` first")

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        files = make_dataset(rows, work)
        print(f"dataset: {rows:,} rows generated in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        runs = [
            ("floor", files["model"], chunk_size),
            ("local", files["model"], chunk_size),
            ("local-small-chunks", files["model"], chunk_size // 4),
            ("local-hook", files["raw"], chunk_size),
            ("local-4x", files["model4"], chunk_size),
            ("floor-4x", files["model4"], chunk_size),
        ]
        if not skip_spark:
            runs.append(("spark", files["model"], chunk_size))
        results: dict[str, dict[str, Any]] = {}
        for name, data, chunk in runs:
            kind = "local" if name.startswith("local") and name != "local-hook" else name.removesuffix("-4x")
            # The machine may be shared: the floor and the local engine take the best of `--repeat` runs.
            repeat = repeat if name in ("floor", "local") else 1
            tries = [measure(kind, data, work, chunk) for _ in range(repeat)]
            results[name] = min(tries, key=lambda r: r["seconds"])
            r = results[name]
            print(
                f"{name:<20} {r['rows']:>9,} rows {r['seconds']:>7.2f} s {r['rows_per_s']:>9,} rows/s "
                f"cpu {r['cpu_seconds']:>7.2f} s peak {r['peak_mb']:>5} MB process {r['process_seconds']:>6.2f} s",
                file=sys.stderr,
            )
    floor = results["floor"]
    figures: dict[str, Any] = {
        "rows": rows,
        "chunk_size": chunk_size,
        "runs": results,
        "local_time_vs_floor": round(results["local"]["seconds"] / floor["seconds"], 2),
        # CPU time does not depend on what else the machine runs: the load-independent view of the same ratio.
        "local_cpu_vs_floor": round(results["local"]["cpu_seconds"] / floor["cpu_seconds"], 2),
        # Start to finish, start-up included (worker processes for the engine, the model load for both).
        "local_process_vs_floor": round(results["local"]["process_seconds"] / floor["process_seconds"], 2),
        "local_memory_4x_data_vs_1x": round(results["local-4x"]["peak_mb"] / results["local"]["peak_mb"], 2),
        "local_memory_vs_floor": round(results["local"]["peak_mb"] / floor["peak_mb"], 2),
        "floor_memory_4x_data_vs_1x": round(results["floor-4x"]["peak_mb"] / floor["peak_mb"], 2),
    }
    if "spark" in results:
        figures["spark_time_vs_floor"] = round(results["spark"]["seconds"] / floor["seconds"], 2)
    print(
        f"local engine: {figures['local_time_vs_floor']}x the floor's time; peak memory on 4x the data: "
        f"{figures['local_memory_4x_data_vs_1x']}x",
        file=sys.stderr,
    )
    return figures


if __name__ == "__main__":  # one measured run, in its own process: KIND DATA OUT CHUNK_SIZE
    kind, data, out, chunk = sys.argv[1:5]
    print(json.dumps(child(kind, data, out, int(chunk))))
