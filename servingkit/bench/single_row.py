"""Where one single-row predict spends its time, and what SINGLE_ROW_FAST_PATH (lambda_fn.fast_path) saves.

Interleaved, CPU and wall, min and median per call (servingkit.bench.measure), on the demo model and one
prepared row: the pipeline's `predict` on a one-row DataFrame; its ColumnTransformer (TargetEncoder +
passthrough) alone; the boosted trees alone on the already transformed row; the fast path; and the API
handler (`POST /invocations`, in-process) with the fast path off and on. The fast path's outputs are
compared bit for bit with the pipeline's on `check_rows` random rows (a tenth with unknown categories).
"""

from __future__ import annotations

import json
import os
import random
import warnings
from collections.abc import Callable
from typing import Any

from servingkit.bench.measure import Target, interleave, ratio_of_minima


def _rows(model: Any, n: int, seed: int = 0) -> list[dict[str, Any]]:
    categories = [str(c) for c in model.estimator.steps[0][1].transformers_[0][1].categories_[0]]
    rng = random.Random(seed)
    return [
        {
            "PU_DO": rng.choice(categories) if rng.random() < 0.9 else f"{rng.randint(1, 999)}_{rng.randint(1, 999)}",
            "trip_distance": rng.choice([rng.uniform(0, 60), rng.uniform(0, 1e-3), rng.uniform(0, 1e6), 0.0]),
            "pickup_hour": rng.randint(0, 23),
            "pickup_dow": rng.randint(0, 6),
        }
        for _ in range(n)
    ]


def identical(model: Any, one_row: Callable[[Any], Any], rows: list[dict[str, Any]]) -> int:
    """How many of `rows` the fast path predicts differently (bytes of the float64 output) from the pipeline."""
    import pandas as pd

    mismatches = 0
    for row in rows:
        frame = pd.DataFrame([row])
        if model.estimator.predict(frame).tobytes() != one_row(frame).tobytes():
            mismatches += 1
    return mismatches


def run(repeats: int = 5, calls: int = 200, check_rows: int = 2000) -> dict[str, Any]:
    """Every figure of the module's docstring (ms per call). Raises MissingModelError without the demo model."""
    import pandas as pd
    from threadpoolctl import threadpool_limits

    from lambda_fn.config import settings_from
    from lambda_fn.fast_path import compile_one_row
    from lambda_fn.handler import api_handler
    from lambda_fn.model_store import load_model
    from servingkit.http_local import api_context, build_event, demo_environment

    os.environ.update(demo_environment())  # the API handler reads its settings from the environment
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    env = {k: os.environ[k] for k in ("MODEL_URI", "MODEL_SHA256") if k in os.environ}
    model = load_model(settings_from(env))
    fast_model = load_model(settings_from({**env, "SINGLE_ROW_FAST_PATH": "true"}))
    one_row = compile_one_row(model.estimator)
    if one_row is None or fast_model.one_row is None:
        return {"skipped": f"{type(model.estimator).__name__}: not a shape the fast path reproduces"}
    row = _rows(model, 1, seed=7)[0]
    frame = pd.DataFrame([row])
    columns, trees = model.estimator.steps[0][1], model.estimator.steps[1][1]
    transformed = columns.transform(frame)
    event = build_event("POST", "/invocations", [("Content-Type", "application/json")],
                        json.dumps({"dataframe_records": [row]}).encode())  # fmt: skip
    ctx = api_context()
    from lambda_fn import runtime

    def handler_with(m: Any) -> Callable[[], None]:
        def call() -> None:
            runtime.get_model = lambda *_: m  # type: ignore[assignment]
            assert api_handler(event, ctx)["statusCode"] == 200

        return call

    def many(fn: Callable[[], Any]) -> Callable[[], None]:
        def repeated() -> None:
            for _ in range(calls):
                fn()

        return repeated

    saved = runtime.get_model
    limits = threadpool_limits(limits=1, user_api="openmp")
    try:
        series = interleave(
            {
                "pipeline.predict": many(lambda: model.estimator.predict(frame)),
                "ColumnTransformer.transform": many(lambda: columns.transform(frame)),
                "trees.predict": many(lambda: trees.predict(transformed)),
                "fast path": many(lambda: one_row(frame)),
                "api_handler": many(handler_with(model)),
                "api_handler, fast path": many(handler_with(fast_model)),
            },
            repeats,
        )
    finally:
        runtime.get_model = saved  # type: ignore[method-assign]
        limits.restore_original_limits()
    mismatches = identical(model, one_row, _rows(model, check_rows, seed=1))
    per_call = {name: {k: (round(v / calls, 4) if k != "repeats" and k != "unit" else v) for k, v in
                       s.summary().items()} for name, s in series.items()}  # fmt: skip
    speedup = ratio_of_minima(series["api_handler"], series["api_handler, fast path"])
    print(f"\n{'one row, ms per call':32}{'cpu min':>9}{'median':>9}{'wall min':>9}{'median':>9}")
    for name, f in per_call.items():
        print(f"{name:32}{f['cpu_min']:>9.3f}{f['cpu_median']:>9.3f}{f['wall_min']:>9.3f}{f['wall_median']:>9.3f}")
    print(f"fast path: {mismatches} of {check_rows} random rows differ from the pipeline (bit for bit)")
    return {
        "calls": calls,
        "per_call_ms": per_call,
        "check_rows": check_rows,
        "mismatches": mismatches,
        "api_speedup_cpu": speedup,
        "targets": [Target("single row: api_handler / api_handler with the fast path (CPU)", speedup, 1.0, True)],
    }
