from __future__ import annotations

from typing import Any

import pytest

from lambda_fn.config import ConfigError
from lambda_fn.model_store import LoadedModel
from lambda_fn.records import Reason
from lambda_fn.schema import Signature
from lambda_fn.scoring import ModelBatchError, load_hook, score_batch, self_check
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
    assert out.errors[1].detail == "feature hook failed: missing field 'raw'"  # the field, by name
    assert out.predictions[0] == 20.0 and out.predictions[2] == 60.0


def test_a_hook_failing_everywhere_raises_at_any_batch_size() -> None:
    def hook(rows: list[Any]) -> list[Any]:
        raise RuntimeError("bug")

    for n in (1, 2, 8):
        with pytest.raises(ModelBatchError, match="hook"):
            score_batch([{"x": float(i)} for i in range(n)], loaded(CountingModel()), hook)


def test_a_hook_that_accepted_a_row_before_tells_poison_from_a_broken_hook() -> None:
    broken = {"on": False}

    def hook(rows: list[Any]) -> list[Any]:
        if broken["on"]:
            raise RuntimeError("deployment bug")
        return [{"x": float(r["raw"])} for r in rows]

    model = loaded(CountingModel())
    assert score_batch([{"raw": 1}], model, hook).errors == {}  # the hook's reference: {"raw": 1}
    poison = score_batch([{"oops": 1}], model, hook)  # one row, refused, while the reference still passes
    assert {e.reason for e in poison.errors.values()} == {Reason.HOOK_ERROR}
    broken["on"] = True
    with pytest.raises(ModelBatchError, match="accepted before"):
        score_batch([{"raw": 2}], model, hook)


def test_a_hook_changing_its_input_in_place_keeps_an_intact_reference() -> None:
    def hook(rows: list[Any]) -> list[Any]:
        return [{"x": float(r.pop("raw"))} for r in rows]

    model = loaded(CountingModel())
    score_batch([{"raw": 1}], model, hook)
    assert {e.reason for e in score_batch([{}], model, hook).errors.values()} == {Reason.HOOK_ERROR}


def test_a_model_failing_on_its_reference_fails_a_one_row_batch() -> None:
    est = CountingModel()
    model = loaded(est)
    assert score_batch([{"x": 1.0}], model).errors == {}  # its first scored row is its reference
    assert set(score_batch([{"x": 13.0}], model).errors) == {0}  # poison: the reference still scores
    est.broken = True
    with pytest.raises(ModelBatchError, match="scored before"):
        score_batch([{"x": 2.0}], model)


def test_without_any_evidence_an_all_failing_batch_is_a_model_fault() -> None:
    est = CountingModel()
    bare = loaded(est, signature=None)  # no signature, no feature names: no row can be built to probe it
    with pytest.raises(ModelBatchError, match="no row"):
        score_batch([{"x": 13.0}], bare)
    assert score_batch([{"x": 1.0}, {"x": 13.0}], bare).errors.keys() == {1}
    assert score_batch([{"x": 13.0}], bare).errors.keys() == {0}  # now it has scored a row: poison


def test_a_model_returning_the_wrong_number_of_rows_is_a_fault_at_any_size() -> None:
    class OneTooMany:
        def predict(self, x: Any) -> Any:
            return [0.0] * (len(x) + 1)

    for n in (1, 3, 20):
        with pytest.raises(ModelBatchError):
            score_batch([{"x": float(i)} for i in range(n)], loaded(OneTooMany()))


def test_non_finite_predictions_are_row_errors_when_asked_and_a_nan_model_is_a_fault() -> None:
    class Sqrt:
        def predict(self, x: Any) -> Any:
            import numpy as np

            with np.errstate(invalid="ignore"):
                return np.sqrt(x[:, 0])

    model = loaded(Sqrt())
    out = score_batch([{"x": 4.0}, {"x": -1.0}], model, finite=True)
    assert out.predictions[0] == 2.0 and out.errors[1].reason == Reason.NON_FINITE_PREDICTION
    only_nan = score_batch([{"x": -1.0}], model, finite=True)  # its reference (x=4) still scores: poison
    assert only_nan.errors[0].reason == Reason.NON_FINITE_PREDICTION
    assert score_batch([{"x": -1.0}], loaded(Sqrt())).errors == {}  # the API's choice: NaN passes (it writes null)

    class AlwaysNan:
        def predict(self, x: Any) -> Any:
            return [float("nan")] * len(x)

    with pytest.raises(ModelBatchError):
        score_batch([{"x": 1.0}], loaded(AlwaysNan()), finite=True)


def test_self_check_scores_an_example_or_a_row_from_the_signature() -> None:
    import pandas as pd

    est = CountingModel()
    assert self_check(loaded(est)) is True  # {"x": 0.0} built from the signature scores
    assert self_check(loaded(CountingModel(broken=True))) is False  # proves nothing, refuses nothing
    with pytest.raises(ModelBatchError, match="input example"):
        self_check(loaded(CountingModel(broken=True)), pd.DataFrame({"x": [1.0]}))
    model = loaded(CountingModel(), signature=None)
    assert self_check(model, pd.DataFrame({"x": [1.0]})) is True
    assert score_batch([{"x": 13.0}], model).errors.keys() == {0}  # the example is its reference


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


def test_a_reference_is_a_row_the_model_scored_to_a_finite_value() -> None:
    class Log:
        def predict(self, x: Any) -> Any:
            import numpy as np

            with np.errstate(divide="ignore", invalid="ignore"):
                return np.log(x[:, 0])

    model = loaded(Log())
    assert score_batch([{"x": -1.0}], model).errors == {}  # the API's rule lets NaN through; no reference from it
    with pytest.raises(ModelBatchError, match="no row"):  # log(0) = -inf: the built row is no evidence either
        score_batch([{"x": -1.0}], model, finite=True)
    score_batch([{"x": 1.0}], model, finite=True)
    assert score_batch([{"x": -1.0}], model, finite=True).errors[0].reason == Reason.NON_FINITE_PREDICTION
