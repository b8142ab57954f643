"""Deterministic capture sampling: the rate holds, stable per id, monotonic in the rate, variant-blind."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_fn.monitoring.sampling import Sampler, hash_id, point, sampled

IDS = [f"ride-{i:07d}" for i in range(100_000)]


@pytest.mark.parametrize("rate", [0.001, 0.01, 0.1, 0.5, 0.9])
def test_rate_holds_within_binomial_tolerance(rate: float) -> None:
    n = len(IDS)
    hits = sum(sampled(i, rate) for i in IDS)
    sd = math.sqrt(n * rate * (1 - rate))
    assert abs(hits - n * rate) < 5 * sd, (hits, n * rate)  # 5 sigma: fails by chance about once in 3.5 million


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80), st.floats(0, 1), st.floats(0, 1))
def test_stable_and_monotonic_in_rate(record_id: str, r1: float, r2: float) -> None:
    lo, hi = sorted((r1, r2))
    assert sampled(record_id, lo) == sampled(record_id, lo)
    assert point(record_id) == point(record_id)
    if sampled(record_id, lo):
        assert sampled(record_id, hi)
    assert not sampled(record_id, 0.0) and sampled(record_id, 1.0)


def test_the_same_records_for_every_variant_and_a_key_changes_them() -> None:
    primary, shadow = Sampler(0.05), Sampler(0.05)
    picked = [i for i in IDS[:20000] if primary(i)]
    assert picked == [i for i in IDS[:20000] if shadow(i)]
    other = [i for i in IDS[:20000] if Sampler(0.05, key=b"another key")(i)]
    assert len(set(picked) & set(other)) < len(picked) * 0.2


def test_keyed_id_hashing_for_privacy() -> None:
    s = Sampler(1.0, id_key=b"secret-1")
    assert s.written_id("ride-1") == s.written_id("ride-1") == hash_id("ride-1", b"secret-1")
    assert s.written_id("ride-1") != s.written_id("ride-2")
    assert s.written_id("ride-1") != hash_id("ride-1", b"secret-2") and "ride" not in s.written_id("ride-1")
    assert Sampler(1.0).written_id("ride-1") == "ride-1"
    assert sampled("\ud800 lone surrogate", 1.0)  # any str, hashed without error
    with pytest.raises(ValueError):
        Sampler(1.5)
    with pytest.raises(ValueError):
        Sampler(0.5, key=b"")
