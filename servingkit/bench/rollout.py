"""`servingkit bench rollout`: what rollout costs a stream batch.

Primary only vs A/B (two variants) vs primary + shadow.

The same demo model, the same realistic ride events and in-memory sinks for all three, measured in this
run, interleaved (servingkit.bench.measure: CPU beside wall, min and median); the ratios are CPU ratios of
minima against the primary-only batch. The shadow uses a second copy of the model (its own
thread, SHADOW_TIMEOUT_MS far above its run time, so the figure is its full cost, not the cap). The last
line is one JSON object with the figures.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")


def run(sizes: tuple[int, ...] = (500, 5000), repeats: int = 7) -> dict[str, Any]:
    """CPU and wall ms per batch of each size for the three setups (min, median), and CPU ratios to primary only.
    Raises MissingModelError when the demo model is not trained."""

    from threadpoolctl import threadpool_limits

    from lambda_fn.config import settings_from
    from lambda_fn.model_store import load_model
    from lambda_fn.scoring import load_hook
    from lambda_fn.shadow import ShadowScorer
    from lambda_fn.sinks import MemorySink
    from lambda_fn.stream import StreamRuntime, process_batch
    from lambda_fn.variants import Arm, Variants
    from servingkit.bench import ROOT
    from servingkit.bench.measure import interleave, ratio_of_minima
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
    print(f"{'records':>8} {'setup':<22} {'CPU ms min/median':>18} {'wall ms min/median':>19} {'ratio':>7}")
    # One OpenMP thread, as deployed (infra sets OMP_NUM_THREADS=1): with more, idle OpenMP threads spin while the
    # shadow's or the other arm's predict wants the core, and the spin is counted as CPU (12x instead of 2x for A/B).
    with threadpool_limits(limits=1, user_api="openmp"):
        for n in sizes:
            event = kinesis_event(list(ride_events(n, seed=n)))

            def one(rt: StreamRuntime, event: dict[str, Any] = event) -> None:
                rt.output = MemorySink()
                process_batch(event, rt)

            # Interleaved after one warm-up round, so load changes on a shared machine hit every setup alike.
            series = interleave({name: partial(one, rt) for name, rt in setups.items()}, repeats)
            row: dict[str, Any] = {}
            for name, x in series.items():
                ratio = ratio_of_minima(x, series["primary"])
                row[name] = x.summary() | {"ratio": round(ratio, 3)}
                print(f"{n:>8} {name:<22} {x.cpu_min * 1000:>8.1f} / {x.cpu_median * 1000:<8.1f} "
                      f"{x.wall_min * 1000:>8.1f} / {x.wall_median * 1000:<8.1f} {ratio:>6.2f}x")  # fmt: skip
            figures["batches"][str(n)] = row
    shadow.close()
    return figures
