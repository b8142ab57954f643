from __future__ import annotations

from typing import Any

import pytest

from lambda_fn.config import ConfigError
from lambda_fn.model_store import LoadedModel
from lambda_fn.records import Reason
from lambda_fn.schema import Signature
from lambda_fn.scoring import SYSTEMIC_MIN_ROWS, ModelBatchError, load_hook, score_batch
from tests.helpers import fake_model

SIG = Signature.from_columns([{"name": "x", "type": "double"}])


class CountingModel:
    """Predicts 2*x; raises when any row has x == 13 (a row the model cannot score)."""

    def __init__(self, broken: bool = False) -> None:
        self.calls = 0
        self.broken = broken

    def predict(self, x: Any) -> Any:
        self.calls += 1
        values = [float(v) for v in (x[:, 0] if hasattr(x, "shape") and len(x.shape) == 2 else x)]
        if self.broken or 13.0 in values:
            raise ValueError("cannot score 13")
        return [2 * v for v in values]


def loaded(est: Any, signature: Signature | None = SIG) -> LoadedModel:
    return fake_model(est, signature)


def test_one_predict_call_per_batch() -> None:
    est = CountingModel()
    out = score_batch([{"x": i + 0.5} for i in range(1000)], loaded(est))
    assert est.calls == 1
    assert out.errors == {}
    assert out.predictions[10] == 21.0


def test_schema_violations_are_rejected_and_the_rest_scored() -> None:
    est = CountingModel()
    out = score_batch([{"x": 1.0}, {"x": "one"}, {"y": 1.0}, {"x": 3}], loaded(est))
    assert set(out.errors) == {1, 2}
    assert all(e.reason == Reason.SCHEMA for e in out.errors.values())
    assert out.predictions[0] == 2.0 and out.predictions[3] == 6.0
    assert est.calls == 1


def test_model_error_rows_are_isolated_by_bisection() -> None:
    est = CountingModel()
    rows = [{"x": float(i % 50)} for i in range(1000)]  # x == 13 appears 20 times
    out = score_batch(rows, loaded(est))
    bad = {i for i, r in enumerate(rows) if r["x"] == 13.0}
    assert set(out.errors) == bad
    assert all(out.errors[i].reason == Reason.MODEL_ERROR for i in bad)
    assert all(out.predictions[i] == 2 * rows[i]["x"] for i in range(1000) if i not in bad)
    assert out.scored == 980


def test_a_model_failing_everywhere_is_a_batch_fault_not_poison() -> None:
    with pytest.raises(ModelBatchError):
        score_batch([{"x": float(i)} for i in range(8)], loaded(CountingModel(broken=True)))
    with pytest.raises(ModelBatchError, match="too many rows"):
        score_batch([{"x": float(i)} for i in range(4096)], loaded(CountingModel(broken=True)))


def test_hook_failures_are_isolated_per_row() -> None:
    def hook(rows: list[Any]) -> list[Any]:
        return [{"x": float(r["raw"]) * 10} for r in rows]

    out = score_batch([{"raw": 1}, {"oops": 2}, {"raw": 3}], loaded(CountingModel()), hook)
    assert set(out.errors) == {1}
    assert out.errors[1].reason == Reason.HOOK_ERROR
    assert "KeyError" in out.errors[1].detail
    assert out.predictions[0] == 20.0 and out.predictions[2] == 60.0


def test_a_hook_failing_everywhere_raises() -> None:
    def hook(rows: list[Any]) -> list[Any]:
        raise RuntimeError("bug")

    with pytest.raises(ModelBatchError, match="hook"):
        score_batch([{"x": float(i)} for i in range(SYSTEMIC_MIN_ROWS)], loaded(CountingModel()), hook)
    small = score_batch([{"x": 1.0}, {"x": 2.0}], loaded(CountingModel()), hook)
    assert {e.reason for e in small.errors.values()} == {Reason.HOOK_ERROR} and len(small.errors) == 2


def test_load_hook_errors_name_the_setting() -> None:
    assert load_hook("lambda_fn.hooks:taxi_features") is not None
    with pytest.raises(ConfigError, match="FEATURE_HOOK"):
        load_hook("no_such_module_xyz:f")
    with pytest.raises(ConfigError, match="no function"):
        load_hook("lambda_fn.hooks:nope")


def test_small_batches_failing_in_the_model_are_dead_lettered_not_retried_forever() -> None:
    out = score_batch([{"x": 13.0}, {"x": 13.0}], loaded(CountingModel()))
    assert {e.reason for e in out.errors.values()} == {Reason.MODEL_ERROR}
    assert len(out.errors) == 2
