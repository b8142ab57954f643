"""Feature hooks: the contract (`FeatureError`) and an example (`FEATURE_HOOK=lambda_fn.hooks:taxi_features`).

A hook receives the decoded feature objects of a whole batch and returns the model's input rows, one
per object, as SageMaker's `input_fn` or a custom pyfunc would. Users put their own next to this.

When an object cannot be turned into a row, a hook raises `FeatureError` naming each field at fault and
why; the scorer then re-runs it object by object and reports every bad object with those fields (the
API's 400 details, the stream's dead-letter `detail`). Any other exception is reported by its type
only: its text may quote the input, and the input may be sensitive.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


class FeatureError(ValueError):
    """One feature object the hook cannot use: `problems` maps each field at fault to what is wrong with it.

    Say what is expected, never the value ("must be an ISO 8601 date-time", not "'2024-13-01' is bad").
    """

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = dict(problems)
        super().__init__("; ".join(f"field '{name}' {why}" for name, why in self.problems.items()))


_TAXI_FIELDS = ("PULocationID", "DOLocationID", "trip_distance", "pickup_datetime")


def _location(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _pickup(value: Any) -> datetime | None:
    try:  # str() as before: batch rows may hold timestamps, whose text is ISO 8601
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _taxi_row(ride: Any) -> dict[str, Any]:
    if not isinstance(ride, dict):
        raise FeatureError({"ride": f"must be a JSON object, got {type(ride).__name__}"})
    problems = {name: "is missing" for name in _TAXI_FIELDS if name not in ride}
    pu, do = _location(ride.get("PULocationID")), _location(ride.get("DOLocationID"))
    when = _pickup(ride.get("pickup_datetime"))
    for name, parsed, expected in (
        ("PULocationID", pu, "must be an integer location id"),
        ("DOLocationID", do, "must be an integer location id"),
        ("pickup_datetime", when, "must be an ISO 8601 date-time string"),
    ):
        if parsed is None and name not in problems:
            problems[name] = expected
    if problems or when is None:
        raise FeatureError({name: problems[name] for name in _TAXI_FIELDS if name in problems})
    return {
        "PU_DO": f"{pu}_{do}",
        "trip_distance": ride["trip_distance"],  # its type is the model signature's to check
        "pickup_hour": when.hour,
        "pickup_dow": when.weekday(),
    }


def taxi_features(rides: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Raw ride events → the demo model's columns: the route as one categorical, hour and weekday.

    A ride with fields missing or unreadable raises `FeatureError` naming all of them; the scorer then
    re-runs the hook ride by ride and rejects only the rides that fail.
    """
    return [_taxi_row(ride) for ride in rides]
