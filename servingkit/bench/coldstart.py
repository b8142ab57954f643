"""`servingkit bench coldstart`: a fresh process imports the handler, loads the model from an S3 emulator,
scores a first batch.

Compared, in the same run, with the floor: a fresh process that only imports scikit-learn (and skops)
and loads the same model file from local disk. Wall seconds from process spawn to exit and the child's
peak RSS are measured from the parent (os.wait4), median of several runs. Last line: one JSON object.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from typing import Any

from servingkit.bench import ROOT, BenchError
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


def _run(code: str, arg: str, env: dict[str, str]) -> tuple[float, float]:
    """Seconds from spawn to exit, and peak RSS in MiB (the child's high-water mark, wait4), of one fresh
    interpreter. No /proc sampling: the parent stays idle while the child runs."""
    run = run_sampled([sys.executable, "-c", code, arg], env, cwd=ROOT, interval=None)
    if run.returncode != 0:
        raise BenchError(f"child failed ({run.returncode}):\n{run.stderr[-3000:]}")
    return run.seconds, run.rusage.ru_maxrss / 1024


def run(runs: int = 5, batch: int = 100) -> dict[str, Any]:
    """Median of `runs` cold starts of the kit (a first batch of `batch` records) and of the floor.
    Raises MissingModelError when the demo model is not trained, BenchError when a child fails."""

    import boto3
    from moto.server import ThreadedMotoServer

    from servingkit.events import kinesis_event
    from servingkit.taxi import ride_events
    from servingkit.train import demo_artifact

    model_dir, release = demo_artifact()

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    creds = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update(creds)
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket="models")
    for f in sorted(model_dir.rglob("*")):
        if f.is_file():
            s3.upload_file(str(f), "models", f"taxi/{f.relative_to(model_dir).as_posix()}")
    boto3.client("kinesis", endpoint_url=endpoint).create_stream(StreamName="predictions", ShardCount=1)
    dlq = boto3.client("sqs", endpoint_url=endpoint).create_queue(QueueName="dlq")["QueueUrl"]

    event_path = ROOT / "build" / "bench-coldstart-event.json"
    event_path.write_text(json.dumps(kinesis_event(list(ride_events(batch)), key_field="ride_id")))

    base = {k: v for k, v in os.environ.items() if not k.startswith(("MODEL_", "AWS_ENDPOINT"))}
    base.update(creds, POWERTOOLS_METRICS_DISABLED="true", POWERTOOLS_LOG_LEVEL="WARNING")
    kit_env = dict(
        base,
        AWS_ENDPOINT_URL=endpoint,
        MODEL_URI="s3://models/taxi",
        MODEL_SHA256=release["sha256"],
        OUTPUT_STREAM_NAME="predictions",
        DLQ_URL=dlq,
        FEATURES_FIELD="ride",
        ID_FIELD="ride_id",
        FEATURE_HOOK="lambda_fn.hooks:taxi_features",
    )
    results: dict[str, Any] = {"runs": runs, "batch": batch}
    try:
        kit, floor = [], []
        for i in range(runs):
            # Each kit run downloads again: a fresh cache dir, as in a new container.
            kit_env["MODEL_CACHE_DIR"] = str(ROOT / "build" / f"bench-cache-{i}-{time.time_ns()}")
            kit.append(_run(KIT_CHILD, str(event_path), kit_env))
            floor.append(_run(FLOOR_CHILD, str(model_dir / "model.skops"), base))
            print(
                f"run {i + 1}/{runs}: kit {kit[-1][0]:.2f}s {kit[-1][1]:.0f} MiB, "
                f"floor {floor[-1][0]:.2f}s {floor[-1][1]:.0f} MiB",
                flush=True,
            )
    finally:
        server.stop()
        for d in (ROOT / "build").glob("bench-cache-*"):
            import shutil

            shutil.rmtree(d, ignore_errors=True)
    k_s, k_m = statistics.median(x[0] for x in kit), statistics.median(x[1] for x in kit)
    f_s, f_m = statistics.median(x[0] for x in floor), statistics.median(x[1] for x in floor)
    print(f"\n{'':22}{'seconds':>9}{'peak MiB':>10}")
    print(f"{'kit (S3 + first batch)':22}{k_s:>9.2f}{k_m:>10.0f}")
    print(f"{'floor (import + load)':22}{f_s:>9.2f}{f_m:>10.0f}")
    print(f"{'ratio':22}{k_s / f_s:>9.2f}{k_m / f_m:>10.2f}")
    results.update(
        kit_seconds=round(k_s, 3),
        kit_peak_mib=round(k_m, 1),
        floor_seconds=round(f_s, 3),
        floor_peak_mib=round(f_m, 1),
        seconds_ratio=round(k_s / f_s, 2),
        memory_ratio=round(k_m / f_m, 2),
        met=bool(k_s / f_s <= 1.5),
    )
    return results
