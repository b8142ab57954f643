"""`servingkit bench stream`: the kit's stream handler vs the per-record tutorial pattern vs the floor.

(a) `stream_handler` end to end on a real Kinesis event (output and DLQ to in-memory sinks);
(b) the usual tutorial loop: per record decode, hook, predict one row, put one record;
(c) the floor: JSON decode of the payloads plus one predict call on rows prepared beforehand.
All three use the same demo model and the same realistic ride events, measured in this run.
The last line is one JSON object with the figures.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")


def _event(n: int) -> dict[str, Any]:
    from servingkit.events import kinesis_event
    from servingkit.taxi import ride_events

    return kinesis_event(list(ride_events(n, seed=n)), start_seq=49_000_000, key_field="ride_id")


def _median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(sizes: tuple[int, ...] = (100, 1000, 10000), repeats: int = 5, tutorial_max: int = 1000) -> dict[str, Any]:
    """Median milliseconds per batch of each size for (a), (b) (up to `tutorial_max` records) and (c).
    Raises MissingModelError when the demo model is not trained."""

    import pandas as pd

    from lambda_fn import handler, runtime
    from lambda_fn.config import settings_from
    from lambda_fn.hooks import taxi_features
    from lambda_fn.model_store import load_model
    from lambda_fn.records import strict_loads
    from lambda_fn.sinks import MemorySink
    from lambda_fn.stream import StreamRuntime
    from servingkit.lambda_context import LambdaContext, function_arn
    from servingkit.train import FEATURES_FIELD, ID_FIELD, demo_artifact

    model_dir, release = demo_artifact()
    model = load_model(settings_from({"MODEL_URI": str(model_dir), "MODEL_SHA256": release["sha256"]}))
    ctx = LambdaContext(invoked_function_arn=function_arn("scorer", "live"), timeout_ms=300_000)

    def kit(event: dict[str, Any]) -> None:
        rt = StreamRuntime(
            model=lambda: model,
            output=MemorySink(),
            dlq=MemorySink(),
            hook=taxi_features,
            features_field=FEATURES_FIELD,
            id_field=ID_FIELD,
        )
        runtime.stream_runtime = lambda: rt  # type: ignore[assignment,method-assign]
        resp = handler.stream_handler(event, ctx)
        assert resp == {"batchItemFailures": []}
        assert len(rt.output.entries) == len(event["Records"])  # type: ignore[attr-defined]

    def tutorial(event: dict[str, Any]) -> None:
        sink: list[dict[str, Any]] = []

        def put_record(StreamName: str, Data: bytes, PartitionKey: str) -> None:  # noqa: N803
            sink.append({"Data": Data, "PartitionKey": PartitionKey})

        for record in event["Records"]:
            payload = json.loads(base64.b64decode(record["kinesis"]["data"]))
            row = taxi_features([payload[FEATURES_FIELD]])
            prediction = model.estimator.predict(pd.DataFrame(row))[0]
            out = {"id": payload[ID_FIELD], "prediction": float(prediction), "model": model.identity}
            put_record(StreamName="out", Data=json.dumps(out).encode(), PartitionKey=str(payload[ID_FIELD]))
        assert len(sink) == len(event["Records"])

    results: dict[str, Any] = {"model": model.identity["name"], "repeats": repeats, "sizes": {}}
    print(
        f"{'records':>8} {'kit (a) ms':>11} {'tutorial (b) ms':>16} {'floor (c) ms':>13} {'b/a':>7} {'a/c':>6}"
        f" {'a/c(fast json)':>15}"
    )
    for n in sizes:
        event = _event(n)
        datas = [base64.b64decode(r["kinesis"]["data"]) for r in event["Records"]]
        prepared = pd.DataFrame(taxi_features([json.loads(d)[FEATURES_FIELD] for d in datas]))

        def floor(datas: list[bytes] = datas, prepared: pd.DataFrame = prepared) -> None:
            [json.loads(d) for d in datas]
            model.estimator.predict(prepared)

        def floor_fast(datas: list[bytes] = datas, prepared: pd.DataFrame = prepared) -> None:
            [strict_loads(d) for d in datas]  # the kit's own faster JSON path, for a stricter comparison
            model.estimator.predict(prepared)

        kit(event)  # warm caches (first predict, imports)
        a = _median_seconds(lambda event=event: kit(event), repeats)  # type: ignore[misc]
        c = _median_seconds(floor, repeats)
        c_fast = _median_seconds(floor_fast, repeats)
        b = _median_seconds(lambda event=event: tutorial(event), 1) if n <= tutorial_max else None  # type: ignore[misc]
        entry = {
            "kit_ms": round(a * 1000, 2),
            "tutorial_ms": round(b * 1000, 2) if b else None,
            "floor_ms": round(c * 1000, 2),
            "kit_records_per_s": round(n / a),
            "tutorial_over_kit": round(b / a, 1) if b else None,
            "kit_over_floor": round(a / c, 2),
            "floor_fast_json_ms": round(c_fast * 1000, 2),
            "kit_over_floor_fast_json": round(a / c_fast, 2),
        }
        results["sizes"][str(n)] = entry
        b_txt = f"{entry['tutorial_ms']:>16.1f}" if b else f"{'(skipped)':>16}"
        ratio = f"{entry['tutorial_over_kit']:>7.1f}" if b else f"{'-':>7}"
        print(
            f"{n:>8} {entry['kit_ms']:>11.1f} {b_txt} {entry['floor_ms']:>13.1f} {ratio}"
            f" {entry['kit_over_floor']:>6.2f} {entry['kit_over_floor_fast_json']:>15.2f}"
        )
    s = results["sizes"]
    results["targets"] = {
        "kit_vs_tutorial_at_1000_min_30x": s.get("1000", {}).get("tutorial_over_kit"),
        "kit_vs_floor_at_10000_max_2x": s.get("10000", {}).get("kit_over_floor"),
    }
    results["met"] = bool(
        (results["targets"]["kit_vs_tutorial_at_1000_min_30x"] or 0) >= 30
        and (results["targets"]["kit_vs_floor_at_10000_max_2x"] or 99) <= 2
    )
    return results
