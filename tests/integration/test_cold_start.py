"""The cold start in fresh interpreters: one thread, so no import can ever race another.

Two threads importing scikit-learn from different submodules can deadlock on its circular imports, and
CPython then hands one of them a partially initialised module (`make test` once failed 1 run in 3 with
"cannot import name '_MetadataRequester' from partially initialized module"). The model loaders used to be
imported on a thread during the download; that thread also cost CPU (0.2-0.4 s per cold start, measured by
`servingkit bench coldstart`), so the cold start now has none. The first test proves no thread starts and
that a wrong pin is refused before any loader is imported; the second runs the whole cold start many times
beside a host that imports scikit-learn on its own thread, a regression guard for the race.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest

from lambda_fn.model_store import artifact_sha256
from servingkit.localcloud.emulator import Emulator, endpoint_environment, start_emulator
from tests.helpers import kinesis_event, save_joblib, save_mlflow_model, tiny_pipeline, tiny_row

ROOT = Path(__file__).resolve().parents[2]
RUNS = 32
BUDGET_S = 600.0  # a bound on a hang, not a benchmark: the machine may be shared

# Every thread the model load starts (by name), and whether a loader was imported by the time it returned.
LOAD_PROBE = r"""
import json, sys, threading
before_import = threading.active_count()
import lambda_fn.handler
from lambda_fn import model_store
from lambda_fn.config import get_settings
assert threading.active_count() == before_import, "importing the handler must start no thread"
started = []
start = threading.Thread.start
threading.Thread.start = lambda self: (started.append(self.name), start(self))[1]
try:
    model_store.load_model(get_settings())
    outcome = "loaded"
except model_store.ChecksumMismatchError:
    outcome = "refused"
print(json.dumps({"threads": started, "outcome": outcome, "loaders": "sklearn" in sys.modules}))
"""

# Exactly the cold start, preceded by what the failing host did: import scikit-learn on its own thread
# after the handler. A thread switch every 10 us makes an interleaving race likelier when one exists; on
# the old code about 1 run in 30 of this sequence failed, so this is a regression guard, and the window
# test above is the proof.
COLD_START = r"""
import json, sys, time
sys.setswitchinterval(1e-5)
import lambda_fn.handler
time.sleep(float(sys.argv[2]))  # runs spread the host's import over the time the old thread was importing
import sklearn.linear_model, sklearn.pipeline  # noqa: F401 - the host's own imports
from tests.helpers import FakeContext
response = lambda_fn.handler.stream_handler(json.load(open(sys.argv[1])), FakeContext())
assert response == {"batchItemFailures": []}, response
"""


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with start_emulator() as emu:
        yield emu


@pytest.fixture(scope="module")
def models(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    """The tiny model in S3 as an MLflow directory (skops) and as one joblib file: URI and sha256 of each."""
    root = tmp_path_factory.mktemp("cold")
    directory = save_mlflow_model(root / "mlflow", tiny_pipeline())
    single = save_joblib(root / "model.joblib")
    s3 = boto3.client("s3", **_client_args(emulator))
    s3.create_bucket(Bucket="models")
    for f in sorted(directory.rglob("*")):
        if f.is_file():
            s3.upload_file(str(f), "models", f"tiny/dir/{f.relative_to(directory).as_posix()}")
    s3.upload_file(str(single), "models", "tiny/model.joblib")
    return {
        "dir": ("s3://models/tiny/dir", artifact_sha256(directory)),
        "joblib": ("s3://models/tiny/model.joblib", artifact_sha256(single)),
    }


def _client_args(emulator: Emulator) -> dict[str, Any]:
    env = endpoint_environment(emulator.endpoint_url)
    return {
        "endpoint_url": emulator.endpoint_url,
        "region_name": env["AWS_REGION"],
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
    }


def _env(emulator: Emulator, uri: str, sha: str, cache: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MODEL_", "AWS_", "FEATURE", "ID_FIELD"))}
    return {
        **base,
        **endpoint_environment(emulator.endpoint_url),
        "PYTHONPATH": str(ROOT),
        "MODEL_URI": uri,
        "MODEL_SHA256": sha,
        "MODEL_CACHE_DIR": str(cache),
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "ERROR",
        **extra,
    }


def _probe(env: dict[str, str]) -> dict[str, Any]:
    probe = subprocess.run(
        [sys.executable, "-c", LOAD_PROBE], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    result: dict[str, Any] = json.loads(probe.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("kind", ["dir", "joblib"])
def test_the_cold_start_starts_no_thread(
    emulator: Emulator, models: dict[str, tuple[str, str]], tmp_path: Path, kind: str
) -> None:
    uri, sha = models[kind]
    assert _probe(_env(emulator, uri, sha, tmp_path / "cache")) == {"threads": [], "outcome": "loaded", "loaders": True}


@pytest.mark.parametrize("kind", ["dir", "joblib"])
def test_a_wrong_pin_is_refused_before_any_loader_is_imported(
    emulator: Emulator, models: dict[str, tuple[str, str]], tmp_path: Path, kind: str
) -> None:
    uri, _ = models[kind]
    result = _probe(_env(emulator, uri, "0" * 64, tmp_path / "cache"))
    assert result == {"threads": [], "outcome": "refused", "loaders": False}


def test_many_fresh_cold_starts_never_see_a_partially_initialised_module(
    emulator: Emulator, models: dict[str, tuple[str, str]], tmp_path: Path
) -> None:
    kinesis = boto3.client("kinesis", **_client_args(emulator))
    kinesis.create_stream(StreamName="cold-predictions", ShardCount=1)
    dlq = boto3.client("sqs", **_client_args(emulator)).create_queue(QueueName="cold-dlq")["QueueUrl"]
    event = tmp_path / "event.json"
    event.write_text(json.dumps(kinesis_event([tiny_row(i) for i in range(20)])))
    started = time.monotonic()

    def cold_start(i: int) -> tuple[int, str]:
        uri, sha = models["dir" if i % 2 else "joblib"]  # skops directory and a pickle (unpickled on main)
        env = _env(emulator, uri, sha, tmp_path / f"cache-{i}", OUTPUT_STREAM_NAME="cold-predictions", DLQ_URL=dlq)
        left = max(30.0, BUDGET_S - (time.monotonic() - started))
        run = subprocess.run(
            [sys.executable, "-c", COLD_START, str(event), str((i % 8) * 0.15)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=left,
        )
        return run.returncode, run.stderr[-2000:]

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = list(pool.map(cold_start, range(RUNS)))
    failed = [err for code, err in results if code != 0]
    assert not failed, f"{len(failed)} of {RUNS} cold starts failed; first:\n{failed[0]}"
