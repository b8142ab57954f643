"""Hypothesis profiles for the property tests of the delivery guarantee (marker `fuzz`).

`make test` runs them bounded: a fixed seed (derandomize) and each test's own example count, so the
run is reproducible and takes seconds. `make fuzz` sets FUZZ_PROFILE=fuzz: random seeds and
FUZZ_SCALE (default 25) times as many examples. `fuzz(n)` gives a test its settings.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("FUZZ_PROFILE", "bounded")
SCALE = int(os.environ.get("FUZZ_SCALE", "25")) if PROFILE == "fuzz" else 1
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]

settings.register_profile(
    "bounded", derandomize=True, deadline=None, database=None, suppress_health_check=_SLOW_OK, print_blob=True
)
settings.register_profile("fuzz", deadline=None, database=None, suppress_health_check=_SLOW_OK, print_blob=True)
if PROFILE not in ("bounded", "fuzz"):
    raise RuntimeError(f"FUZZ_PROFILE={PROFILE!r}: bounded or fuzz")


def fuzz(examples: int) -> settings:
    """Settings for a property test: `examples` bounded, SCALE times more under `make fuzz`."""
    return settings(settings.get_profile(PROFILE), max_examples=examples * SCALE)
