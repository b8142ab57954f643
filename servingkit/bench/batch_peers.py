"""Batch scoring against what a user would pick instead, on the same model, data and machine, in one run.

Whole processes, interleaved (servingkit.bench.measure), CPU from os.wait4 (the process and the children it
reaped: the local engine's workers) beside wall time:
  floor        pandas.read_parquet + one predict (the kit's loader, no validation, no output);
  local        the kit's local engine (`servingkit batch`: chunks, validation, Parquet output);
  mlflow       `mlflow models predict -m build/model --env-manager local` on the same rows (CSV in, JSON out).
And on one local Spark session (`local[2]`) in one process, interleaved inside it, CPU of the whole process
tree (the JVM and its Python workers, /proc) beside wall time:
  spark        the kit's Spark engine (mapInPandas on the same core);
  spark_udf    `mlflow.pyfunc.spark_udf` over the same Parquet, written to Parquet.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from servingkit.bench import ROOT, BenchError
from servingkit.bench.batch import FEATURES
from servingkit.bench.measure import Progress, Sample, Series, Target, interleave, ratio_of_minima
from servingkit.bench.util import run_sampled


def _dataset(rows: int, root: Path) -> tuple[Path, Path]:
    """The model-column Parquet file (with ride ids) and the same rows as CSV without them (for mlflow)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from servingkit.taxi import rides

    cols = rides(rows, seed=2026)
    when = pd.to_datetime(pd.Series(cols["pickup_datetime"]))
    frame = pd.DataFrame(
        {
            "ride_id": [f"ride-{i:07d}" for i in range(rows)],
            "PU_DO": pd.Series(cols["PULocationID"]).astype(str) + "_" + pd.Series(cols["DOLocationID"]).astype(str),
            "trip_distance": cols["trip_distance"],
            "pickup_hour": when.dt.hour.astype("int64"),
            "pickup_dow": when.dt.day_of_week.astype("int64"),
        }
    )
    parquet, csv = root / "rides" / "rides.parquet", root / "rides.csv"
    parquet.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), parquet, row_group_size=131_072)
    frame[FEATURES].to_csv(csv, index=False)
    return parquet, csv


def _child(cmd: list[str], what: str) -> Sample:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
    run = run_sampled(cmd, env, cwd=ROOT, interval=None)
    if run.returncode != 0:
        raise BenchError(f"{what} failed ({run.returncode}):\n{run.stderr[-3000:]}")
    return Sample(run.rusage.ru_utime + run.rusage.ru_stime, run.seconds)


def local_and_mlflow(
    rows: int, repeats: int, work: Path, mlflow_peer: bool = True, progress: Progress | None = None
) -> dict[str, Series]:
    """floor, local engine and `mlflow models predict` (unless `mlflow_peer` is False), whole processes,
    interleaved."""
    parquet, csv = _dataset(rows, work)
    mlflow = str(ROOT / ".venv" / "bin" / "mlflow")
    chunk = str(min(50_000, max(4, rows // 4)))

    def bench_child(kind: str) -> Sample:
        out = work / f"out-{kind}"
        sample = _child([sys.executable, "-m", "servingkit.bench.batch", kind, str(parquet), str(out), chunk], kind)
        shutil.rmtree(out, ignore_errors=True)
        return sample

    def mlflow_predict() -> Sample:
        out = work / "mlflow.json"
        cmd = [mlflow, "models", "predict", "-m", str(ROOT / "build" / "model"), "-i", str(csv), "-t", "csv",
               "-o", str(out), "--env-manager", "local"]  # fmt: skip
        sample = _child(cmd, "mlflow models predict")
        if len(json.loads(out.read_text())["predictions"]) != rows:
            raise BenchError("mlflow models predict returned a different number of predictions")
        return sample

    runs: dict[str, Callable[[], Sample | None]] = {"floor": lambda: bench_child("floor"),
                                                    "local": lambda: bench_child("local")}  # fmt: skip
    if mlflow_peer:
        runs["mlflow"] = mlflow_predict
    return interleave(runs, repeats, warmup=0, progress=progress)


SPARK_CHILD = r"""
import json, os, shutil, sys, time
from pathlib import Path
from servingkit.bench.batch import FEATURES, model_env
from servingkit.bench.measure import Sample, interleave, tree_cpu_seconds
from servingkit.batch import JobConfig
from servingkit.batch.spark import run_spark, session
import mlflow.pyfunc
from pyspark.sql.functions import struct

data, work, repeats = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
spark = session("local[2]", chunk_size=50_000)
spark.sparkContext.setLogLevel("ERROR")
config = JobConfig(model_env(hook=False))
udf = mlflow.pyfunc.spark_udf(spark, model_uri=model_env(hook=False)["MODEL_URI"], env_manager="local",
                              result_type="double")
cpu = lambda: tree_cpu_seconds(os.getpid())

def kit():
    shutil.rmtree(work / "kit", ignore_errors=True)
    summary = run_spark([data], str(work / "kit"), config, spark=spark)
    assert summary.rejected == 0, summary.reasons

def spark_udf():
    shutil.rmtree(work / "udf", ignore_errors=True)
    df = spark.read.parquet(data)
    df.withColumn("prediction", udf(struct(*FEATURES))).write.parquet(str(work / "udf"))

def timed(fn):
    def run():
        c, w = cpu(), time.perf_counter()
        fn()
        return Sample(cpu() - c, time.perf_counter() - w)
    return run

series = interleave({"spark": timed(kit), "spark_udf": timed(spark_udf)}, repeats, warmup=1,
                    progress=lambda line: print(line, file=sys.stderr, flush=True))
spark.stop()
print(json.dumps({k: [[s.cpu, s.wall] for s in v.samples] for k, v in series.items()}))
"""


def spark_peers(rows: int, repeats: int, work: Path) -> dict[str, Series]:
    """The kit's Spark engine and spark_udf on one local Spark session, interleaved inside one child."""
    parquet = work / "rides" / "rides.parquet"
    if not parquet.exists():
        parquet, _ = _dataset(rows, work)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = run_sampled([sys.executable, "-c", SPARK_CHILD, str(parquet), str(work), str(repeats)], env, cwd=ROOT,
                      interval=None)  # fmt: skip
    if run.returncode != 0:
        raise BenchError(f"spark peers failed ({run.returncode}):\n{run.stderr[-3000:]}")
    raw = json.loads(run.stdout.strip().splitlines()[-1])
    return {name: Series([Sample(c, w) for c, w in samples]) for name, samples in raw.items()}


def run(
    rows: int = 1_000_000,
    repeats: int = 3,
    spark: bool = True,
    mlflow: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Every figure of the module's docstring (`spark`, `mlflow`: False leaves those peers out).
    Raises BenchError when the release is missing or a run fails."""
    if not (ROOT / "build" / "release.json").exists():
        raise BenchError("build/release.json is missing: run `make model` first")
    with tempfile.TemporaryDirectory(prefix="bench-batch-peers-", dir=ROOT / "build") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        series = local_and_mlflow(rows, repeats, work, mlflow, progress)
        if spark:
            series |= spark_peers(rows, repeats, work)
    figures: dict[str, Any] = {"rows": rows, "repeats": repeats, "seconds": round(time.perf_counter() - started, 1)}
    figures |= {name: s.summary(scale=1.0) for name, s in series.items()}
    targets = [Target("batch: local engine / pandas floor (CPU, whole process)",
                      ratio_of_minima(series["local"], series["floor"]), 1.2)]  # fmt: skip
    if mlflow:
        targets.append(Target("batch: mlflow models predict / local engine (CPU)",
                              ratio_of_minima(series["mlflow"], series["local"]), 1.0, True))  # fmt: skip
    if spark:
        targets.append(Target("batch: spark_udf / kit Spark engine (CPU)",
                              ratio_of_minima(series["spark_udf"], series["spark"]), 1.0, True))  # fmt: skip
    figures["targets"] = targets
    print(f"\n{'batch, ' + format(rows, ',') + ' rows, s':32}{'cpu min':>9}{'median':>9}{'wall min':>9}{'median':>9}")
    for name, s in series.items():
        print(f"{name:32}{s.cpu_min:>9.2f}{s.cpu_median:>9.2f}{s.wall_min:>9.2f}{s.wall_median:>9.2f}")
    return figures
