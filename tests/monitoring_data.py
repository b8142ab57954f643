"""Synthetic monitoring data for the window job's tests: a reference and profiles, drifted on demand."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np

from lambda_fn.monitoring.profile import Profile
from lambda_fn.monitoring.reference import Reference

FEATURES = ("zone", "distance", "hour")


def columns(n: int, seed: int, *, distance_shift: float = 0.0) -> tuple[dict[str, Any], np.ndarray]:
    """Rows of three features (string, float, int) and a prediction that does not depend on the shift."""
    rng = np.random.default_rng(seed)
    zone = rng.choice(np.array(["a", "b", "c", "d"]), size=n)
    distance = rng.uniform(0.5, 20, size=n) + distance_shift
    hour = rng.integers(0, 24, size=n).astype(np.int64)
    prediction = 3 + 0.3 * hour + rng.normal(0, 1, size=n)
    return {"zone": zone, "distance": distance, "hour": hour}, prediction


def reference(rows: int = 5000, seed: int = 1) -> Reference:
    cols, pred = columns(rows, seed)
    return Reference.build(cols, pred, meta={"name": "tiny"})


def profiles(
    ref: Reference,
    start: datetime,
    *,
    count: int = 4,
    rows: int = 500,
    every: timedelta = timedelta(minutes=3),
    distance_shift: float = 0.0,
    seed: int = 100,
    variant: str = "primary",
) -> list[tuple[datetime, Profile]]:
    """`count` profiles of `rows` rows each, timed `start`, `start + every`, ..."""
    out = []
    for i in range(count):
        p = Profile.new(ref, variant)
        cols, pred = columns(rows, seed + i, distance_shift=distance_shift)
        p.add_batch(cols, pred)
        out.append((start + every * i, p))
    return out
