"""Data-quality checks (SageMaker Model Monitor's kinds) of a merged profile against the reference."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lambda_fn.monitoring.profile import Profile
from lambda_fn.monitoring.quality import QualityThresholds, check_quality
from lambda_fn.monitoring.reference import Reference
from tests.unit.test_monitor_reference import taxi_frame


def _setup() -> tuple[Reference, pd.DataFrame, np.ndarray]:
    train, y = taxi_frame(20000, 1)
    current, yc = taxi_frame(2000, 3)
    return Reference.build(train, y), current, yc


def _checks(ref: Reference, frame: pd.DataFrame, y: np.ndarray) -> dict[tuple[str, str], object]:
    p = Profile.new(ref)
    for i in range(0, len(frame), 500):
        p.add_batch(frame.iloc[i : i + 500], y[i : i + 500])
    return {(v.feature, v.check): v for v in check_quality(ref, p)}


def test_unchanged_traffic_has_no_violations() -> None:
    ref, current, y = _setup()
    assert _checks(ref, current, y) == {}


def test_each_check_fires_on_its_fault() -> None:
    ref, current, y = _setup()
    bad = current.drop(columns=["pickup_dow"]).assign(tip=1.0)
    bad["trip_distance"] = bad["trip_distance"].astype(object)
    bad.loc[bad.index[:100], "trip_distance"] = "n/a"  # type change
    bad.loc[bad.index[100:400], "trip_distance"] = None  # completeness
    bad.loc[bad.index[400:500], "trip_distance"] = 500.0  # out of range
    bad.loc[bad.index[:300], "PU_DO"] = [f"999_{i}" for i in range(300)]  # unseen zones
    found = _checks(ref, bad, y)
    assert set(found) == {
        ("pickup_dow", "missing_column"),
        ("tip", "extra_column"),
        ("trip_distance", "data_type"),
        ("trip_distance", "completeness"),
        ("trip_distance", "out_of_range"),
        ("PU_DO", "unseen_categories"),
        ("pickup_dow", "completeness"),  # an absent column is missing in every row
    }
    v = found[("trip_distance", "completeness")]
    assert v.observed == 300 / 2000 and v.expected == 0.0 and v.threshold == 0.02  # type: ignore[attr-defined]
    assert found[("trip_distance", "out_of_range")].detail.startswith("0 below")  # type: ignore[attr-defined]
    d = found[("PU_DO", "unseen_categories")].to_dict()  # type: ignore[attr-defined]
    assert set(d) == {"feature", "check", "observed", "expected", "threshold", "detail"}
    assert d["observed"] > d["threshold"] > d["expected"] > 0.0


def test_small_windows_report_only_structural_checks() -> None:
    ref, current, y = _setup()
    small = current.iloc[:100].drop(columns=["pickup_hour"])
    small["trip_distance"] = None
    found = _checks(ref, small, y[:100])
    assert set(found) == {("pickup_hour", "missing_column")}
    loose = Profile.new(ref)
    loose.add_batch(small, y[:100])
    checks = {v.check for v in check_quality(ref, loose, QualityThresholds(min_rows=50))}
    assert "completeness" in checks
