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

    By columns: the pickup times of the rides in the plain form (a JSON object with integer location ids and a
    `YYYY-MM-DDTHH:MM:SS` time, `T` or a space between) are read as one array (`_plain_pickups`); every other
    ride, and every plain one whose date or time is out of range, goes through `_taxi_row` as before, so what a
    ride yields, or the FeatureError it raises, does not depend on the rides beside it.
    """
    rows: list[dict[str, Any] | None] = [None] * len(rides)
    for i, hour, weekday in _plain_pickups(rides):
        ride = rides[i]
        rows[i] = {
            "PU_DO": f"{ride['PULocationID']}_{ride['DOLocationID']}",
            "trip_distance": ride["trip_distance"],
            "pickup_hour": hour,
            "pickup_dow": weekday,
        }
    return [_taxi_row(ride) if row is None else row for row, ride in zip(rows, rides, strict=True)]


_PLAIN_LENGTH = 19  # YYYY-MM-DDTHH:MM:SS
_DIGIT_AT = (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18)
_MONTH_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MONTH_OFFSET = (0, 0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4)  # Sakamoto's weekday offsets, by month


def _plain_pickups(rides: list[Any]) -> list[tuple[int, int, int]]:
    """(index, hour, weekday) of each plain ride whose pickup `datetime.fromisoformat` reads, as it reads it.

    One pass of numpy over the times' characters: the layout checked, the fields read and checked against
    the calendar (year 1-9999, the month's days, leap years, hour < 24, minute and second < 60) and the
    weekday computed by Sakamoto's rule. A ride left out is read by `_taxi_row`.
    """
    import numpy as np

    at = [
        i
        for i, r in enumerate(rides)
        if type(r) is dict
        and type(r.get("PULocationID")) is int
        and type(r.get("DOLocationID")) is int
        and type(when := r.get("pickup_datetime")) is str
        and len(when) == _PLAIN_LENGTH
        and "trip_distance" in r
    ]
    if not at:
        return []
    text = "".join([rides[i]["pickup_datetime"] for i in at]).encode("ascii", "replace")  # one byte a character
    c = np.frombuffer(text, dtype=np.uint8).reshape(len(at), _PLAIN_LENGTH).astype(np.int64) - ord("0")
    digits = c[:, _DIGIT_AT]
    ok = np.all((digits >= 0) & (digits <= 9), axis=1)
    ok &= (c[:, 4] == ord("-") - ord("0")) & (c[:, 7] == ord("-") - ord("0"))
    ok &= (c[:, 10] == ord("T") - ord("0")) | (c[:, 10] == ord(" ") - ord("0"))
    ok &= (c[:, 13] == ord(":") - ord("0")) & (c[:, 16] == ord(":") - ord("0"))
    year = c[:, 0] * 1000 + c[:, 1] * 100 + c[:, 2] * 10 + c[:, 3]
    month = c[:, 5] * 10 + c[:, 6]
    day = c[:, 8] * 10 + c[:, 9]
    hour = c[:, 11] * 10 + c[:, 12]
    ok &= (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1)
    ok &= (hour < 24) & (c[:, 14] * 10 + c[:, 15] < 60) & (c[:, 17] * 10 + c[:, 18] < 60)
    month = np.where(ok, month, 1)  # a row out of range indexes no table below (and is not used)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    ok &= day <= np.asarray(_MONTH_DAYS)[month] + ((month == 2) & leap)
    y = year - (month < 3)
    sunday_first = (y + y // 4 - y // 100 + y // 400 + np.asarray(_MONTH_OFFSET)[month] + day) % 7
    weekday = (sunday_first + 6) % 7  # Monday 0, as datetime.weekday()
    keep = np.flatnonzero(ok)
    return list(zip(np.asarray(at)[keep].tolist(), hour[keep].tolist(), weekday[keep].tolist(), strict=True))
