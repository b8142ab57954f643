"""Hook and validation errors name the field and why, never the value, for every bad row (API and stream)."""

from __future__ import annotations

from typing import Any

import pytest

from lambda_fn.hooks import FeatureError, taxi_features
from lambda_fn.records import Reason
from lambda_fn.schema import Signature, validate
from lambda_fn.scoring import hook_detail, score_batch
from lambda_fn.sinks import MemorySink
from lambda_fn.stream import StreamRuntime, process_batch
from tests.helpers import fake_model, kinesis_event

SECRET = "SECRET-4111111111111111"
RIDE = {"PULocationID": 161, "DOLocationID": 236, "trip_distance": 2.3, "pickup_datetime": "2026-03-01T08:15:00"}
SIG = Signature.from_columns([{"name": "x", "type": "double"}])


class Doubler:
    def predict(self, x: Any) -> Any:
        return x[:, 0] * 2


def checked_hook(rows: list[Any]) -> list[Any]:
    """A hook that names what it refuses, as the contract asks."""
    out = []
    for row in rows:
        problems = {}
        if not isinstance(row.get("x"), (int, float)):
            problems["x"] = "must be a number"
        if "unit" not in row:
            problems["unit"] = "is missing"
        if problems:
            raise FeatureError(problems)
        out.append({"x": row["x"]})
    return out


def test_the_taxi_hook_names_every_bad_field_of_a_ride_and_no_value() -> None:
    bad = {"PULocationID": SECRET, "pickup_datetime": SECRET + "T99"}
    with pytest.raises(FeatureError) as caught:
        taxi_features([RIDE, bad])
    assert caught.value.problems == {
        "PULocationID": "must be an integer location id",
        "DOLocationID": "is missing",
        "trip_distance": "is missing",
        "pickup_datetime": "must be an ISO 8601 date-time string",
    }
    assert SECRET not in str(caught.value)
    assert taxi_features([RIDE]) == [{"PU_DO": "161_236", "trip_distance": 2.3, "pickup_hour": 8, "pickup_dow": 6}]


def test_other_hook_exceptions_are_reported_by_type_without_their_text() -> None:
    assert hook_detail(ValueError(f"invalid literal for int(): {SECRET!r}"), {"z": SECRET}) == (
        "feature hook failed (ValueError); no field named"
    )
    assert hook_detail(KeyError("km"), {"area": "a"}) == "feature hook failed: missing field 'km'"
    # A lookup table indexed by one of the object's values: the key is the value, so it is not quoted.
    assert SECRET not in hook_detail(KeyError(SECRET), {"trip": {"zone": SECRET}})


def test_every_bad_row_of_a_batch_is_listed_with_its_fields() -> None:
    rows = [{"x": 1.0, "unit": "km"}, {"x": SECRET}, {"x": 2.0, "unit": "km"}, {"unit": "km"}, {"x": [SECRET]}]
    result = score_batch(rows, fake_model(Doubler(), SIG), checked_hook)
    assert sorted(result.errors) == [1, 3, 4]
    assert {i: e.reason for i, e in result.errors.items()} == dict.fromkeys([1, 3, 4], Reason.HOOK_ERROR)
    assert result.errors[1].detail == "feature hook rejected: field 'x' must be a number; field 'unit' is missing"
    assert result.errors[3].detail == "feature hook rejected: field 'x' must be a number"
    assert all(SECRET not in e.detail for e in result.errors.values())
    assert result.predictions[0] == 2.0 and result.predictions[2] == 4.0


def test_schema_violations_name_the_field_and_type_not_the_value() -> None:
    out = validate([{"x": SECRET}, {"x": 1.0}, {}], SIG)
    assert out.errors == {0: "field 'x' must be a finite number, got string", 2: "missing required field 'x' (double)"}


def test_the_dead_letter_reason_names_the_fields_of_each_bad_record() -> None:
    items = [{"id": "a", "f": {"x": 1.0, "unit": "km"}}, {"id": "b", "f": {"x": SECRET}}, {"id": "c", "f": {}}]
    out, dlq = MemorySink(), MemorySink()
    rt = StreamRuntime(
        model=lambda: fake_model(Doubler(), SIG),
        output=out,
        dlq=dlq,
        hook=checked_hook,
        features_field="f",
        id_field="id",
    )
    assert process_batch(kinesis_event(items, start_seq=1), rt) == {"batchItemFailures": []}
    letters = {d["id"]: d for d in dlq.json()}
    assert [o["id"] for o in out.json()] == ["a"] and sorted(letters) == ["b", "c"]
    assert {d["reason"] for d in letters.values()} == {"hook_error"}
    assert letters["b"]["detail"] == "feature hook rejected: field 'x' must be a number; field 'unit' is missing"
    assert letters["c"]["detail"] == "feature hook rejected: field 'x' must be a number; field 'unit' is missing"
    assert SECRET not in letters["b"]["detail"]
