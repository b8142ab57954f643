"""Drift: the methods against scipy, injected drift found on its feature only, and the false-positive rate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp, wasserstein_distance

from lambda_fn.monitoring.drift import (
    Thresholds,
    js_distance,
    ks_statistic,
    profile_drift,
    psi,
    wasserstein_1,
)
from lambda_fn.monitoring.profile import Profile
from lambda_fn.monitoring.reference import Reference
from tests.unit.test_monitor_reference import taxi_frame

counts = st.lists(st.integers(0, 1000), min_size=2, max_size=30)


@settings(max_examples=100, deadline=None)
@given(counts, st.data())
def test_js_matches_scipy_and_is_a_bounded_distance(p: list[int], data: st.DataObject) -> None:
    q = data.draw(st.lists(st.integers(0, 1000), min_size=len(p), max_size=len(p)))
    if sum(p) == 0 or sum(q) == 0:
        return
    d = js_distance(np.array(p), np.array(q))
    assert 0.0 <= d <= 1.0
    assert d == pytest.approx(float(jensenshannon(p, q, base=2)), abs=1e-9)
    assert d == pytest.approx(js_distance(np.array(q), np.array(p)), abs=1e-12)
    assert js_distance(np.array(p), np.array(p)) == pytest.approx(0.0, abs=1e-7)
    assert psi(np.array(p), np.array(q)) >= 0.0 and psi(np.array(p), np.array(p)) == pytest.approx(0.0, abs=1e-12)


def test_psi_known_value_and_epsilon_floor() -> None:
    assert psi(np.array([50, 50]), np.array([90, 10])) == pytest.approx(
        0.4 * np.log(0.9 / 0.5) - 0.4 * np.log(0.1 / 0.5)
    )
    # An empty bin on one side is floored at 1e-4, so the score is finite.
    assert np.isfinite(psi(np.array([100, 0]), np.array([50, 50])))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy's p-value of tiny samples; we compare statistics
@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=60), st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=60))
def test_ks_and_wasserstein_match_scipy(a: list[float], b: list[float]) -> None:
    assert ks_statistic(np.array(a), np.array(b)) == pytest.approx(ks_2samp(a, b, method="asymp").statistic, abs=1e-12)
    assert wasserstein_1(np.array(a), np.array(b)) == pytest.approx(wasserstein_distance(a, b), rel=1e-9, abs=1e-9)


def _window(ref: Reference, frame: pd.DataFrame, preds: np.ndarray, batch: int = 500) -> Profile:
    p = Profile.new(ref)
    for i in range(0, len(frame), batch):
        p.add_batch(frame.iloc[i : i + batch], preds[i : i + batch])
    return p


@pytest.fixture(scope="module")
def reference() -> Reference:
    frame, y = taxi_frame(20000, 1)
    return Reference.build(frame, y)


def test_longer_trips_are_flagged_on_trip_distance_only(reference: Reference) -> None:
    frame, y = taxi_frame(4000, 7)
    frame["trip_distance"] = frame["trip_distance"] * 1.6
    drift = {d.feature: d for d in profile_drift(reference, _window(reference, frame, y))}
    assert drift["trip_distance"].severity == "alert" and (drift["trip_distance"].psi or 0.0) > 0.25
    assert profile_drift(reference, _window(reference, frame, y))[0].feature == "trip_distance"  # ranked first
    assert {k: d.severity for k, d in drift.items() if k != "trip_distance"} == dict.fromkeys(
        ["PU_DO", "pickup_hour", "pickup_dow", "prediction"], "ok"
    )


def test_new_zones_are_flagged_on_pu_do_only(reference: Reference) -> None:
    frame, y = taxi_frame(4000, 8)
    rng = np.random.default_rng(0)
    new = rng.random(len(frame)) < 0.3
    frame.loc[new, "PU_DO"] = [f"{z}_{z}" for z in rng.integers(300, 320, int(new.sum()))]
    drift = {d.feature: d for d in profile_drift(reference, _window(reference, frame, y))}
    assert drift["PU_DO"].severity == "alert"
    assert all(d.severity == "ok" for k, d in drift.items() if k != "PU_DO")


def test_too_few_rows_is_insufficient_not_drift(reference: Reference) -> None:
    frame, y = taxi_frame(150, 9)
    frame["trip_distance"] = frame["trip_distance"] * 5
    drift = profile_drift(reference, _window(reference, frame, y))
    assert {d.severity for d in drift} == {"insufficient"} and all(d.psi is None for d in drift)
    assert (
        profile_drift(reference, _window(reference, frame, y), thresholds=Thresholds(min_rows=100))[0].severity
        == "alert"
    )


def test_ks_and_wasserstein_on_raw_samples(reference: Reference) -> None:
    train, _ = taxi_frame(3000, 1)
    frame, y = taxi_frame(1000, 5)
    shifted = frame["trip_distance"].to_numpy() + 2.0
    frame["trip_distance"] = shifted
    samples = {"trip_distance": (train["trip_distance"].to_numpy(), shifted)}
    d = next(x for x in profile_drift(reference, _window(reference, frame, y), samples=samples)
             if x.feature == "trip_distance")  # fmt: skip
    assert d.ks is not None and d.ks > 0.2 and d.wasserstein is not None and d.wasserstein > 0.2
    assert any(r.startswith("ks") for r in d.reasons) and any(r.startswith("wasserstein") for r in d.reasons)
