"""The container's garbage-collector policy (lambda_fn.heap): applied once, by the first model load, never per
batch; the collector still runs, so cyclic garbage stays bounded over a long run of batches."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lambda_fn import heap

ROOT = Path(__file__).resolve().parents[2]


def test_settle_freezes_and_raises_the_young_threshold_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(heap, "_settled", False)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(gc, "get_threshold", lambda: (2000, 10, 10))
    monkeypatch.setattr(gc, "set_threshold", lambda *t: calls.append(t))
    monkeypatch.setattr(gc, "disable", lambda: calls.append("disable"))
    assert heap.settle() is True
    assert heap.settle() is False
    assert calls == ["freeze", (heap.GEN0_THRESHOLD, 10, 10)]
    assert heap.GEN0_THRESHOLD > 3 * 10_000  # above what Lambda's largest batch (10,000 records) keeps alive


# A fresh interpreter (the policy is process-wide): the container's path (runtime.get_model, then process_batch
# with the demo model and its hook) over many batches whose hook leaves cyclic garbage holding each record's
# features. It prints what the test asserts on.
_CONTAINER = """
import gc, json, sys, tracemalloc
from lambda_fn import heap, runtime
from lambda_fn.hooks import taxi_features
from lambda_fn.sinks import MemorySink
from lambda_fn.stream import StreamRuntime, process_batch
from servingkit.events import kinesis_event
from servingkit.taxi import ride_events

batches, size = int(sys.argv[1]), int(sys.argv[2])
if sys.argv[3] == "disabled":  # the control: what the same run does without a collector
    gc.disable()
default = gc.get_threshold()
runtime.get_model()
after_load = {"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}
runtime.get_model()


def cyclic_hook(features):
    for f in features:  # garbage only the collector frees, holding its record's features
        node = {"features": f}
        node["self"] = node
    return taxi_features(features)


event = kinesis_event(list(ride_events(size, seed=3)), start_seq=1, key_field="ride_id")
rt = StreamRuntime(model=runtime.get_model, output=MemorySink(), dlq=MemorySink(), hook=cyclic_hook,
                   features_field="ride", id_field="ride_id")
young = gc.get_stats()[0]["collections"]
tracemalloc.start()
memory = []
for _ in range(batches):
    rt.output, rt.dlq = MemorySink(), MemorySink()
    assert process_batch(event, rt) == {"batchItemFailures": []}
    assert len(rt.output.entries) == size
    memory.append(tracemalloc.get_traced_memory()[0])
print(json.dumps({"default": default, "after_load": after_load, "threshold": gc.get_threshold(),
                  "frozen": gc.get_freeze_count(), "settled_again": heap.settle(),
                  "young_collections": gc.get_stats()[0]["collections"] - young, "memory": memory}))
"""


def _container(release: tuple[Path, Path], batches: int, size: int, collector: str = "on") -> dict[str, Any]:
    model, meta = release
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MODEL_URI": str(model),
        "MODEL_SHA256": json.loads(meta.read_text())["sha256"],
        "POWERTOOLS_LOG_LEVEL": "ERROR",
    }
    args = [sys.executable, "-c", _CONTAINER, str(batches), str(size), collector]
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def test_the_first_model_load_applies_it_once_and_memory_stays_bounded(release: tuple[Path, Path]) -> None:
    batches = 90
    run = _container(release, batches, size=1000)
    assert run["default"][0] == 2000  # CPython 3.13's default, before the model loads
    assert run["after_load"]["threshold"] == [heap.GEN0_THRESHOLD, 10, 10]
    assert run["after_load"]["frozen"] > 10_000  # the libraries and the model, out of every collection
    # Not applied again by the cached loads or by any batch: nothing more was frozen (a frozen object freed by
    # reference counting still leaves; a second freeze would have taken the live event's thousands of objects).
    assert run["frozen"] <= run["after_load"]["frozen"]
    assert run["threshold"] == run["after_load"]["threshold"]
    assert run["settled_again"] is False
    # The collector ran (the garbage piles up to the threshold, then goes) and memory did not grow with the run:
    # the last third of the batches peaks no higher than the first third did.
    assert run["young_collections"] >= 2
    memory = run["memory"]
    third = batches // 3
    assert max(memory[-third:]) < 1.3 * max(memory[:third])
    # The control: the same garbage with no collector grows with every batch (so the bound above is the
    # collector's doing, and the test can see a leak).
    leak = _container(release, third * 2, size=1000, collector="disabled")["memory"]
    assert leak[-1] > 1.8 * leak[third - 1]
