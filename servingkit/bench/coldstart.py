"""`servingkit bench coldstart`: a fresh process imports the handler, loads the model from an S3 emulator,
scores a first batch.

Compared, in the same run, with the floor: a fresh process that only imports scikit-learn (and skops)
and loads the same model file from local disk. Both measured the same way, interleaved: the child's CPU and
peak RSS from os.wait4, wall seconds spawn to exit, min and median (servingkit.bench.measure). Last line: JSON.

The kit's byte code is compiled before the first run, as the image's build does (`compileall` in the
Dockerfile) and as pip does for the floor's packages: with PYTHONDONTWRITEBYTECODE set, or a checkout whose
`__pycache__` is stale, every kit run would otherwise recompile `lambda_fn` and the floor would not.
"""

from __future__ import annotations

import compileall
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from servingkit.bench import ROOT, BenchError
from servingkit.bench.measure import Progress, Sample, Target, interleave, ratio_of_minima
from servingkit.bench.util import run_sampled

KIT_CHILD = r"""
import json, os, sys
from lambda_fn.handler import stream_handler
from servingkit.lambda_context import LambdaContext
event = json.load(open(sys.argv[1]))
response = stream_handler(event, LambdaContext(timeout_ms=300_000))
assert response == {"batchItemFailures": []}, response
"""

FLOOR_CHILD = r"""
import sys
import sklearn
import skops.io as sio
model = sio.load(sys.argv[1], trusted=["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"])
"""


def _compile_kit() -> None:
    """Byte code for everything the kit's child imports from this checkout (lambda_fn, the context stand-in)."""
    ok = compileall.compile_dir(ROOT / "lambda_fn", quiet=1) and all(
        compileall.compile_file(ROOT / "servingkit" / name, quiet=1) for name in ("__init__.py", "lambda_context.py")
    )
    if not ok:
        raise BenchError("lambda_fn does not compile (compileall); fix it before timing its cold start")


def _child(code: str, arg: str, env: dict[str, str], peaks: list[float]) -> Sample:
    """One fresh interpreter: its own CPU (wait4: user + system, its reaped children included) and wall seconds
    spawn to exit; its peak RSS in MiB into `peaks`. No /proc sampling: the parent stays idle meanwhile."""
    run = run_sampled([sys.executable, "-c", code, arg], env, cwd=ROOT, interval=None)
    if run.returncode != 0:
        raise BenchError(f"child failed ({run.returncode}):\n{run.stderr[-3000:]}")
    peaks.append(run.rusage.ru_maxrss / 1024)
    return Sample(run.rusage.ru_utime + run.rusage.ru_stime, run.seconds)


@contextmanager
def _emulated_cloud(batch: int) -> Iterator[tuple[dict[str, str], dict[str, str], Path]]:
    """An S3 emulator holding the demo model, a stream and a queue: (kit env, floor env, first-batch event)."""
    import boto3

    from servingkit.events import kinesis_event
    from servingkit.localcloud.emulator import start_emulator
    from servingkit.taxi import ride_events
    from servingkit.train import demo_artifact

    model_dir, release = demo_artifact()
    # The kit's one embedded emulator (moto on loopback, its per-request access log off).
    emulator = start_emulator()
    try:
        endpoint = emulator.endpoint_url
        creds = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
        s3 = boto3.client("s3", endpoint_url=endpoint, **_client_creds(creds))
        s3.create_bucket(Bucket="models")
        for f in sorted(model_dir.rglob("*")):
            if f.is_file():
                s3.upload_file(str(f), "models", f"taxi/{f.relative_to(model_dir).as_posix()}")
        boto3.client("kinesis", endpoint_url=endpoint, **_client_creds(creds)).create_stream(
            StreamName="predictions", ShardCount=1
        )
        dlq = boto3.client("sqs", endpoint_url=endpoint, **_client_creds(creds)).create_queue(QueueName="dlq")
        event_path = ROOT / "build" / "bench-coldstart-event.json"
        event_path.write_text(json.dumps(kinesis_event(list(ride_events(batch)), key_field="ride_id")))
        base = {k: v for k, v in os.environ.items() if not k.startswith(("MODEL_", "AWS_ENDPOINT"))}
        # One OpenMP thread in both, as deployed (infra/environment.py sets OMP_NUM_THREADS=1) and as the other
        # sections run: with more, the kit's two predicts (self-check, first batch) leave idle OpenMP threads
        # spinning, CPU the floor, which never predicts, does not spend.
        base.update(
            creds, POWERTOOLS_METRICS_DISABLED="true", POWERTOOLS_LOG_LEVEL="WARNING", FLOOR_MODEL=str(model_dir),
            OMP_NUM_THREADS="1",
        )  # fmt: skip
        kit_env = dict(
            base,
            AWS_ENDPOINT_URL=endpoint,
            MODEL_URI="s3://models/taxi",
            MODEL_SHA256=release["sha256"],
            OUTPUT_STREAM_NAME="predictions",
            DLQ_URL=dlq["QueueUrl"],
            FEATURES_FIELD="ride",
            ID_FIELD="ride_id",
            FEATURE_HOOK="lambda_fn.hooks:taxi_features",
        )
        yield kit_env, base, event_path
    finally:
        emulator.stop()
        for d in (ROOT / "build").glob("bench-cache-*"):
            shutil.rmtree(d, ignore_errors=True)


def _client_creds(creds: dict[str, str]) -> dict[str, Any]:
    return {"aws_access_key_id": creds["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": creds["AWS_SECRET_ACCESS_KEY"],
            "region_name": creds["AWS_DEFAULT_REGION"]}  # fmt: skip


def run(runs: int = 5, batch: int = 100, progress: Progress | None = None) -> dict[str, Any]:
    """`runs` interleaved cold starts of the kit (a first batch of `batch` records) and of the floor: CPU and
    wall, min and median; the target is the CPU ratio of minima (<= 1.3x).
    Raises MissingModelError when the demo model is not trained, BenchError when a child fails."""
    peaks: dict[str, list[float]] = {"kit": [], "floor": []}
    _compile_kit()
    with _emulated_cloud(batch) as (kit_env, floor_env, event_path):
        floor_model = str(Path(floor_env["FLOOR_MODEL"]) / "model.skops")

        def kit() -> Sample:
            # Each kit run downloads again: a fresh cache dir, as in a new container.
            env = dict(kit_env, MODEL_CACHE_DIR=str(ROOT / "build" / f"bench-cache-{time.time_ns()}"))
            return _child(KIT_CHILD, str(event_path), env, peaks["kit"])

        series = interleave(
            {"kit": kit, "floor": lambda: _child(FLOOR_CHILD, floor_model, floor_env, peaks["floor"])},
            runs,
            warmup=0,
            progress=progress or (lambda line: print(line, file=sys.stderr, flush=True)),
        )
    k, f = series["kit"], series["floor"]
    target = Target("cold start: kit / import-and-load floor (CPU)", ratio_of_minima(k, f), 1.3)
    print(f"\n{'cold start, seconds':24}{'cpu min':>9}{'median':>9}{'wall min':>9}{'median':>9}{'peak MiB':>10}")
    for name, x in series.items():
        print(f"{name:24}{x.cpu_min:>9.2f}{x.cpu_median:>9.2f}{x.wall_min:>9.2f}{x.wall_median:>9.2f}"
              f"{statistics.median(peaks[name]):>10.0f}")  # fmt: skip
    print(target.line())
    return {
        "runs": runs,
        "batch": batch,
        "kit": k.summary(scale=1.0) | {"peak_mib_median": round(statistics.median(peaks["kit"]), 1)},
        "floor": f.summary(scale=1.0) | {"peak_mib_median": round(statistics.median(peaks["floor"]), 1)},
        "cpu_ratio_of_minima": round(target.ratio, 3),
        "wall_ratio_of_minima": round(ratio_of_minima(k, f, clock="wall"), 3),
        "targets": [target],
        "met": target.met,
    }
