"""`servingkit bench stream` (= `bench all --section stream`): the kit's stream handler against the floor, the
per-record tutorial loop and the Powertools BatchProcessor pattern (`compare`), and what capture + profiles add
to the handler (`run_monitoring`, `bench stream --monitoring`). Both measured by servingkit.bench.measure.

The floor: what any correct stream scorer does at the least, with nothing of the kit's: per record base64 and a
JSON decode, the same feature hook on the batch, one predict, per prediction a JSON encode into the same sink. Its
JSON is orjson, the fastest codec in the image (the kit uses it too, so the kit's codec is no advantage over it);
`floor_stdlib` is the same with the standard library's `json`, as a tutorial writes it. The former floor
(`floor_prepared`: `json.loads` of the payloads and one predict on rows prepared beforehand, so no base64, no hook
and no output) is measured beside them and reported too. All use the same demo model and the same
realistic ride events, into in-memory sinks.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from functools import partial
from typing import Any

os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")


def _event(n: int) -> dict[str, Any]:
    from servingkit.events import kinesis_event
    from servingkit.taxi import ride_events

    return kinesis_event(list(ride_events(n, seed=n)), start_seq=49_000_000, key_field="ride_id")


class MemoryS3:
    """put_object into a dict: the capture's S3 without an emulator, so the figure is capture's own CPU."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, **_: Any) -> dict[str, Any]:  # noqa: N803
        self.objects[f"{Bucket}/{Key}"] = Body
        return {}


def _reference(model_dir: Any, model: Any) -> Any:
    """The release's reference (`reference.json` in the model directory), else one built from generated rides."""
    import pandas as pd

    from lambda_fn.hooks import taxi_features
    from lambda_fn.monitoring.reference import Reference
    from servingkit.taxi import ride_events
    from servingkit.train import FEATURES_FIELD

    path = model_dir / "reference.json"
    if path.is_file():
        return Reference.from_json(path.read_bytes())
    frame = pd.DataFrame(taxi_features([e[FEATURES_FIELD] for e in ride_events(20_000, seed=1)]))
    return Reference.build(frame, model.estimator.predict(frame))


def run_monitoring(sizes: tuple[int, ...] = (1000, 10000), repeats: int = 15, rate: float = 0.1) -> dict[str, Any]:
    """The stream handler with capture + profiles on (in-memory S3) vs off, interleaved (servingkit.bench.measure:
    CPU of the whole process, capture's worker threads included, beside wall; min and median)."""
    from threadpoolctl import threadpool_limits

    from lambda_fn import handler, heap, runtime
    from lambda_fn.config import settings_from
    from lambda_fn.hooks import taxi_features
    from lambda_fn.model_store import load_model
    from lambda_fn.monitoring.emit import CaptureConfig, Emitter
    from lambda_fn.monitoring.sampling import Sampler
    from lambda_fn.sinks import MemorySink
    from lambda_fn.stream import StreamRuntime
    from servingkit.bench.measure import interleave, ratio_of_minima
    from servingkit.lambda_context import LambdaContext, function_arn
    from servingkit.train import FEATURES_FIELD, ID_FIELD, demo_artifact

    model_dir, release = demo_artifact()
    # The GC policy around the load, as the container's first load applies it (lambda_fn.runtime.get_model);
    # process-wide, so every compared run has it.
    heap.settle()
    model = load_model(settings_from({"MODEL_URI": str(model_dir), "MODEL_SHA256": release["sha256"]}))
    heap.keep_loaded()
    ctx = LambdaContext(invoked_function_arn=function_arn("scorer", "live"), timeout_ms=300_000)
    s3 = MemoryS3()
    # A bound far above the work, so every run's capture finishes inside its measurement.
    config = CaptureConfig("bench", "monitoring", Sampler(rate), 30.0, False, _reference(model_dir, model))
    emitter = Emitter(config, lambda: s3)

    def call(event: dict[str, Any], capture: Emitter | None) -> None:
        rt = StreamRuntime(model=lambda: model, output=MemorySink(), dlq=MemorySink(), hook=taxi_features,
                           features_field=FEATURES_FIELD, id_field=ID_FIELD, capture=capture,
                           deployment=dict(model.identity))  # fmt: skip
        runtime.stream_runtime = lambda: rt  # type: ignore[assignment,method-assign]
        assert handler.stream_handler(event, ctx) == {"batchItemFailures": []}

    results: dict[str, Any] = {"model": model.identity["name"], "repeats": repeats, "rate": rate, "sizes": {},
                               "omp_threads": 1}  # fmt: skip
    # One OpenMP thread, as the deployed functions run (infra/environment.py sets OMP_NUM_THREADS=1): with more,
    # the model's idle OpenMP threads spin while capture's worker wants a core, and the spin is counted as CPU.
    limits = threadpool_limits(limits=1, user_api="openmp")
    print(f"{'records':>8} {'off CPU min/median ms':>22} {'on CPU min/median ms':>21} {'on/off min':>10} "
          f"{'captured':>9}")  # fmt: skip
    try:
        for n in sizes:
            event = _event(n)
            before = len(s3.objects)
            runs = {"off": partial(call, event, None), "on": partial(call, event, emitter)}
            series = interleave(runs, repeats)  # one warm-up round of each, then on and off take turns
            off, on = series["off"], series["on"]
            entry: dict[str, Any] = {
                "off": off.summary(),
                "on": on.summary(),
                "ratio_min": round(ratio_of_minima(on, off), 3),
                "objects_per_batch": (len(s3.objects) - before) / (repeats + 1),
            }
            results["sizes"][str(n)] = entry
            print(f"{n:>8} {off.cpu_min * 1000:>10.1f} / {off.cpu_median * 1000:>9.1f} "
                  f"{on.cpu_min * 1000:>9.1f} / {on.cpu_median * 1000:>9.1f} {entry['ratio_min']:>10.3f} "
                  f"{entry['objects_per_batch']:>9.1f}")  # fmt: skip
    finally:
        emitter.close()
        limits.restore_original_limits()
    ratios = [e["ratio_min"] for e in results["sizes"].values()]
    results["target_max"] = 1.1
    results["met"] = bool(ratios) and max(ratios) <= 1.1
    return results


# --------------------------------------------------------------------------- peers, interleaved (bench all)


def powertools_pattern(model: Any, sink: Any) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The handler the Powertools batch documentation teaches: `BatchProcessor` + `process_partial_response`
    with a record handler that decodes one record and predicts one row, writing to `sink` (a MemorySink)."""
    import pandas as pd
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
    from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord

    from lambda_fn.hooks import taxi_features
    from lambda_fn.sinks import Entry
    from servingkit.train import FEATURES_FIELD, ID_FIELD

    processor = BatchProcessor(event_type=EventType.KinesisDataStreams)

    def record_handler(record: KinesisStreamRecord) -> None:
        payload = record.kinesis.data_as_json()
        row = taxi_features([payload[FEATURES_FIELD]])
        prediction = model.estimator.predict(pd.DataFrame(row))[0]
        out = {"id": payload[ID_FIELD], "prediction": float(prediction), "model": model.identity}
        sink.put([Entry(len(sink.entries), json.dumps(out).encode(), str(payload[ID_FIELD]))])

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return dict(
            process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
        )

    return handler


_Codec = Callable[[Any], Any]  # a JSON decode (bytes -> value) or encode (value -> bytes) of the floors


def compare(
    sizes: tuple[int, ...] = (1000, 10000),
    peer_size: int = 200,
    repeats: int = 5,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Interleaved, CPU and wall, min and median (servingkit.bench.measure): the kit's handler against the floor
    and the former floor (module docstring) at each of `sizes`, and against the per-record tutorial loop and the
    Powertools BatchProcessor pattern at `peer_size` records (one predict per record: about a second per 100
    records, so they run on fewer).
    Raises MissingModelError when the demo model is not trained."""
    import orjson
    import pandas as pd
    from threadpoolctl import threadpool_limits

    from lambda_fn import handler, heap, runtime
    from lambda_fn.config import settings_from
    from lambda_fn.hooks import taxi_features
    from lambda_fn.model_store import load_model
    from lambda_fn.sinks import Entry, MemorySink
    from lambda_fn.stream import StreamRuntime
    from servingkit.bench.measure import Target, interleave, ratio_of_minima
    from servingkit.lambda_context import LambdaContext, function_arn
    from servingkit.train import FEATURES_FIELD, ID_FIELD, demo_artifact

    model_dir, release = demo_artifact()
    # The GC policy around the load, as the container's first load applies it (lambda_fn.runtime.get_model);
    # process-wide, so every compared run has it.
    heap.settle()
    model = load_model(settings_from({"MODEL_URI": str(model_dir), "MODEL_SHA256": release["sha256"]}))
    heap.keep_loaded()
    ctx = LambdaContext(invoked_function_arn=function_arn("scorer", "live"), timeout_ms=300_000)

    def kit(event: dict[str, Any]) -> None:
        rt = StreamRuntime(model=lambda: model, output=MemorySink(), dlq=MemorySink(), hook=taxi_features,
                           features_field=FEATURES_FIELD, id_field=ID_FIELD)  # fmt: skip
        runtime.stream_runtime = lambda: rt  # type: ignore[assignment,method-assign]
        assert handler.stream_handler(event, ctx) == {"batchItemFailures": []}
        assert len(rt.output.entries) == len(event["Records"])  # type: ignore[attr-defined]

    def floor_of(event: dict[str, Any], loads: _Codec, dumps: _Codec) -> Callable[[], None]:
        """The least a correct handler does: decode, the user's hook, one predict, encode each output."""

        def floor() -> None:
            payloads = [loads(base64.b64decode(r["kinesis"]["data"])) for r in event["Records"]]
            rows = taxi_features([p[FEATURES_FIELD] for p in payloads])
            predictions = model.estimator.predict(pd.DataFrame(rows)).tolist()
            sink = MemorySink()
            sink.put([
                Entry(i, dumps({"id": p[ID_FIELD], "prediction": y, "model": model.identity}), str(p[ID_FIELD]))
                for i, (p, y) in enumerate(zip(payloads, predictions, strict=True))
            ])  # fmt: skip
            assert len(sink.entries) == len(event["Records"])

        return floor

    def prepared_floor_of(event: dict[str, Any]) -> Callable[[], None]:
        """The former floor: `json.loads` of each payload and one predict on rows prepared beforehand."""
        datas = [base64.b64decode(r["kinesis"]["data"]) for r in event["Records"]]
        prepared = pd.DataFrame(taxi_features([json.loads(d)[FEATURES_FIELD] for d in datas]))

        def floor_prepared() -> None:
            [json.loads(d) for d in datas]
            model.estimator.predict(prepared)

        return floor_prepared

    def tutorial(event: dict[str, Any]) -> None:
        sink = MemorySink()
        for i, record in enumerate(event["Records"]):
            payload = json.loads(base64.b64decode(record["kinesis"]["data"]))
            prediction = model.estimator.predict(pd.DataFrame(taxi_features([payload[FEATURES_FIELD]])))[0]
            out = {"id": payload[ID_FIELD], "prediction": float(prediction), "model": model.identity}
            sink.put([Entry(i, json.dumps(out).encode(), str(payload[ID_FIELD]))])
        assert len(sink.entries) == len(event["Records"])

    def powertools(event: dict[str, Any]) -> None:
        sink = MemorySink()
        assert powertools_pattern(model, sink)(event, ctx) == {"batchItemFailures": []}
        assert len(sink.entries) == len(event["Records"])

    figures: dict[str, Any] = {"sizes": {}, "targets": []}
    limits = threadpool_limits(limits=1, user_api="openmp")  # as deployed (infra sets OMP_NUM_THREADS=1)
    try:
        for n in sizes:
            event = _event(n)
            runs: dict[str, Callable[[], None]] = {
                "kit": partial(kit, event),
                "floor": floor_of(event, orjson.loads, orjson.dumps),
                "floor_stdlib": floor_of(event, json.loads, lambda v: json.dumps(v).encode()),
                "floor_prepared": prepared_floor_of(event),
            }
            s = interleave(runs, repeats, progress=progress)
            ratio = ratio_of_minima(s["kit"], s["floor"])
            former = ratio_of_minima(s["kit"], s["floor_prepared"])
            figures["sizes"][str(n)] = {name: x.summary() for name, x in s.items()} | {
                "kit_over_floor": ratio,
                "kit_over_floor_stdlib": ratio_of_minima(s["kit"], s["floor_stdlib"]),
                "kit_over_floor_prepared": former,
            }
            if n == 10000:
                figures["targets"].append(
                    Target("stream: kit / floor (decode + hook + predict + encode) at 10,000 records (CPU)", ratio, 1.3)
                )
                figures["targets"].append(
                    Target("stream: kit / former floor (loads + predict on prepared rows) at 10,000 records (CPU)",
                           former, 1.3)
                )  # fmt: skip
        event = _event(peer_size)
        s = interleave(
            {"kit": lambda: kit(event), "tutorial": lambda: tutorial(event), "powertools": lambda: powertools(event)},
            max(1, repeats // 2),
            progress=progress,
        )
        peers: dict[str, Any] = {name: x.summary() for name, x in s.items()}
        for peer in ("tutorial", "powertools"):
            over = ratio_of_minima(s[peer], s["kit"])
            peers[f"{peer}_over_kit"] = over
            figures["targets"].append(Target(f"stream: {peer} / kit at {peer_size} records (CPU)", over, 1.0, True))
        figures["peers"] = {"records": peer_size, **peers}
    finally:
        limits.restore_original_limits()
    return figures
