"""`servingkit bench rollout`: what rollout costs a stream batch.

Primary only vs A/B (two variants) vs primary + shadow.

The same demo model, the same realistic ride events and in-memory sinks for all three, measured in this
run; the ratios are against the primary-only batch. The shadow uses a second copy of the model (its own
thread, SHADOW_TIMEOUT_MS far above its run time, so the figure is its full cost, not the cap). The last
line is one JSON object with the figures.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")


def run(sizes: tuple[int, ...] = (500, 5000), repeats: int = 7) -> dict[str, Any]:
    """Median ms per batch of each size for the three setups, and their ratios to primary only.
    Raises MissingModelError when the demo model is not trained."""

    from lambda_fn.config import settings_from
    from lambda_fn.model_store import load_model
    from lambda_fn.scoring import load_hook
    from lambda_fn.shadow import ShadowScorer
    from lambda_fn.sinks import MemorySink
    from lambda_fn.stream import StreamRuntime, process_batch
    from lambda_fn.variants import Arm, Variants
    from servingkit.bench import ROOT
    from servingkit.events import kinesis_event
    from servingkit.taxi import ride_events
    from servingkit.train import FEATURE_HOOK, FEATURES_FIELD, ID_FIELD, demo_artifact

    model_dir, release = demo_artifact(ROOT)

    settings = settings_from({"MODEL_URI": str(model_dir), "MODEL_SHA256": release["sha256"]})
    primary, challenger, shadow_model = (load_model(settings) for _ in range(3))
    hook = load_hook(FEATURE_HOOK)

    def runtime(**extra: Any) -> StreamRuntime:
        return StreamRuntime(
            model=lambda: primary,
            output=MemorySink(),
            dlq=MemorySink(),
            hook=hook,
            features_field=FEATURES_FIELD,
            id_field=ID_FIELD,
            **extra,
        )

    shadow = ShadowScorer(lambda: shadow_model, timeout_s=30)
    setups = {
        "primary": runtime(),
        "ab_two_variants": runtime(
            variants=Variants([Arm("champion", 90, lambda: primary), Arm("challenger", 10, lambda: challenger)])
        ),
        "primary_plus_shadow": runtime(shadow=shadow),
    }
    figures: dict[str, Any] = {"model": release["name"], "repeats": repeats, "batches": {}}
    print(f"{'records':>8} {'setup':<22} {'ms/batch':>10} {'ratio':>7}")
    for n in sizes:
        event = kinesis_event(list(ride_events(n, seed=n)))
        times: dict[str, list[float]] = {name: [] for name in setups}
        for rt in setups.values():
            process_batch(event, rt)  # warm-up
        # Round robin, so load changes on a shared machine hit every setup alike.
        for _ in range(repeats):
            for name, rt in setups.items():
                rt.output = MemorySink()
                start = time.perf_counter()
                process_batch(event, rt)
                times[name].append((time.perf_counter() - start) * 1000)
        base = statistics.median(times["primary"])
        row: dict[str, Any] = {}
        for name, values in times.items():
            ms = statistics.median(values)
            row[name] = {"ms": round(ms, 2), "ratio": round(ms / base, 2)}
            print(f"{n:>8} {name:<22} {ms:>10.2f} {ms / base:>6.2f}x")
        figures["batches"][str(n)] = row
    shadow.close()
    return figures
