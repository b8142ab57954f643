"""lambda_fn.fast_path (SINGLE_ROW_FAST_PATH): one-row predictions identical to the pipeline's, bit for bit
(1,000 random rows here; `servingkit bench all` checks 2,000 more on the demo model)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lambda_fn.config import settings_from
from lambda_fn.fast_path import compile_one_row
from lambda_fn.model_store import load_model
from tests.helpers import save_skops, tiny_pipeline

ZONES = [f"{a}_{b}" for a in range(1, 30) for b in range(1, 8)]


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "PU_DO": rng.choice(ZONES, n),
            "trip_distance": rng.gamma(2.0, 3.0, n),
            "pickup_hour": rng.integers(0, 24, n),
            "pickup_dow": rng.integers(0, 7, n),
        }
    )


@pytest.fixture(scope="module")
def pipeline() -> Any:
    """The demo's shape: TargetEncoder on the route, the numbers passed through, boosted trees."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import TargetEncoder

    x = _frame(3000, seed=0)
    y = x["trip_distance"] * 3 + x["pickup_hour"] * 0.1 + x["PU_DO"].str.len()
    columns = ColumnTransformer(
        [("route", TargetEncoder(target_type="continuous"), ["PU_DO"]),
         ("numeric", "passthrough", ["trip_distance", "pickup_hour", "pickup_dow"])]
    )  # fmt: skip
    return Pipeline([("features", columns), ("model", HistGradientBoostingRegressor(max_iter=40))]).fit(x, y)


def _random_rows(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        zone = rng.choice(ZONES) if rng.random() < 0.85 else f"unknown-{rng.randint(0, 10**6)}"
        distance = rng.choice([rng.uniform(0, 60), rng.uniform(0, 1e-9), rng.uniform(0, 1e9), 0.0, -1.5, 2.0**60])
        rows.append({"PU_DO": zone, "trip_distance": distance, "pickup_hour": rng.randint(-3, 30),
                     "pickup_dow": rng.randint(0, 6)})  # fmt: skip
    return rows


def test_identical_to_the_pipeline_on_thousands_of_random_rows(pipeline: Any) -> None:
    one_row = compile_one_row(pipeline)
    assert one_row is not None
    for row in _random_rows(1000, seed=1):
        frame = pd.DataFrame([row])
        expected, got = pipeline.predict(frame), one_row(frame)
        assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes(), row


def test_a_value_the_table_does_not_cover_takes_the_ordinary_path(pipeline: Any) -> None:
    one_row = compile_one_row(pipeline)
    assert one_row is not None
    base = {"PU_DO": "1_1", "trip_distance": 1.0, "pickup_hour": 3, "pickup_dow": 1}
    for change in ({"PU_DO": None}, {"PU_DO": 7}, {"trip_distance": float("nan")}, {"pickup_hour": "3"}):
        assert one_row(pd.DataFrame([base | change])) is None, change


def test_other_shapes_are_left_alone() -> None:
    from sklearn.linear_model import LinearRegression

    assert compile_one_row(tiny_pipeline()) is None  # OneHotEncoder + remainder: not reproduced
    assert compile_one_row(LinearRegression()) is None
    assert compile_one_row(object()) is None


def test_the_setting_turns_it_on_for_one_row_only(pipeline: Any, tmp_path: Path) -> None:
    path = save_skops(tmp_path / "model.skops", pipeline)
    env = {
        "MODEL_URI": str(path),
        "MODEL_TRUSTED_TYPES": "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    }
    plain, fast = load_model(settings_from(env)), load_model(settings_from(env | {"SINGLE_ROW_FAST_PATH": "true"}))
    assert plain.one_row is None and fast.one_row is not None
    for row in _random_rows(100, seed=2):
        frame = pd.DataFrame([row])
        assert fast.predict(frame) == plain.predict(frame)
    batch = _frame(50, seed=3)
    assert fast.predict(batch) == plain.predict(batch)  # batches never take the one-row path
