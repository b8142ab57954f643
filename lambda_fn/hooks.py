"""Example feature hooks (`FEATURE_HOOK=lambda_fn.hooks:taxi_features`).

A hook receives the decoded feature objects of a whole batch and returns the model's input rows, one
per object, as SageMaker's `input_fn` or a custom pyfunc would. Users put their own next to this.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


def taxi_features(rides: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Raw ride events → the demo model's columns: the route as one categorical, hour and weekday.

    A ride whose fields are missing or of the wrong type raises; the scorer then re-runs the hook row
    by row and dead-letters only the rides that fail.
    """
    rows = []
    for ride in rides:
        when = datetime.fromisoformat(str(ride["pickup_datetime"]).replace("Z", "+00:00"))
        rows.append(
            {
                "PU_DO": f"{int(ride['PULocationID'])}_{int(ride['DOLocationID'])}",
                "trip_distance": ride["trip_distance"],
                "pickup_hour": when.hour,
                "pickup_dow": when.weekday(),
            }
        )
    return rows
