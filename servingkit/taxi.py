"""Realistic, deterministic taxi ride data for the demo model, the demo producer and benchmarks.

Zones follow the shape of New York's 265 taxi zones: five boroughs with their own centroids and
traffic, two airports, busier Manhattan pickups. Durations depend on distance, borough speed, rush
hours and weekends, with heavy-tailed noise. The same seed gives the same rides.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

N_ZONES = 265
AIRPORTS = (132, 138)  # JFK, LaGuardia
_BOROUGHS = {  # name: (zones share, centre x km, centre y km, spread km, base speed km/h)
    "Manhattan": (0.26, 0.0, 0.0, 3.0, 14.0),
    "Brooklyn": (0.23, 3.0, -9.0, 5.0, 20.0),
    "Queens": (0.26, 12.0, -2.0, 6.0, 24.0),
    "Bronx": (0.17, 4.0, 12.0, 4.0, 22.0),
    "Staten Island": (0.08, -12.0, -16.0, 5.0, 30.0),
}
_MILES_PER_KM = 0.621371


@dataclass(frozen=True)
class City:
    x: np.ndarray
    y: np.ndarray
    speed: np.ndarray
    popularity: np.ndarray


def city(seed: int = 7) -> City:
    rng = np.random.default_rng(seed)
    x = np.zeros(N_ZONES + 1)
    y = np.zeros(N_ZONES + 1)
    speed = np.zeros(N_ZONES + 1)
    pop = np.zeros(N_ZONES + 1)
    zone = 1
    names = list(_BOROUGHS)
    for b, name in enumerate(names):
        share, cx, cy, spread, kmh = _BOROUGHS[name]
        count = N_ZONES - zone + 1 if b == len(names) - 1 else round(share * N_ZONES)
        for _ in range(count):
            x[zone] = cx + rng.normal(0, spread)
            y[zone] = cy + rng.normal(0, spread)
            speed[zone] = kmh * rng.uniform(0.85, 1.15)
            pop[zone] = rng.lognormal(2.5 if name == "Manhattan" else 1.0, 0.8)
            zone += 1
    for airport, (ax, ay) in zip(AIRPORTS, ((18.0, -10.0), (10.0, 3.0)), strict=True):
        x[airport], y[airport], speed[airport], pop[airport] = ax, ay, 35.0, 40.0
    pop[0] = 0.0
    return City(x, y, speed, pop / pop.sum())


def rides(n: int, seed: int = 42, start: datetime = datetime(2026, 1, 1)) -> dict[str, np.ndarray]:
    """Columns of n rides, with the trip duration in minutes as the target."""
    c = city()
    rng = np.random.default_rng(seed)
    pu = rng.choice(N_ZONES + 1, size=n, p=c.popularity)
    # Most trips stay near the pickup; some cross the city.
    near = rng.random(n) < 0.7
    do_far = rng.choice(N_ZONES + 1, size=n, p=c.popularity)
    zone_dist = np.hypot(c.x[:, None] - c.x[None, :], c.y[:, None] - c.y[None, :])
    zone_dist[:, 0] = np.inf
    nearest = np.argsort(zone_dist, axis=1)[:, :12]
    do_near = nearest[pu, rng.integers(0, 12, size=n)]
    do = np.where(near, do_near, do_far)
    km = np.hypot(c.x[pu] - c.x[do], c.y[pu] - c.y[do]) * 1.3 + rng.gamma(1.5, 0.6, size=n)
    miles = np.round(np.maximum(km * _MILES_PER_KM, 0.1), 2)
    # Pickup times: two rush-hour peaks on weekdays, late nights on weekends.
    day = rng.integers(0, 90, size=n)
    hour_p = np.array(
        [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1.5, 3, 4, 3, 2.2, 2.2, 2.4, 2.4, 2.5, 2.8, 3.2, 4, 4.2, 3.5, 3, 2.6, 2.2, 1.6]
    )
    hour = rng.choice(24, size=n, p=hour_p / hour_p.sum())
    minute = rng.integers(0, 60, size=n)
    when = [
        start + timedelta(days=int(d), hours=int(h), minutes=int(m)) for d, h, m in zip(day, hour, minute, strict=True)
    ]
    dow = np.array([w.weekday() for w in when])
    rush = ((hour >= 7) & (hour <= 9) | (hour >= 16) & (hour <= 19)) & (dow < 5)
    speed = (c.speed[pu] + c.speed[do]) / 2 * np.where(rush, 0.65, 1.0) * np.where(dow >= 5, 1.1, 1.0)
    minutes = 2.0 + km / speed * 60 + np.where(np.isin(do, AIRPORTS) | np.isin(pu, AIRPORTS), 6.0, 0.0)
    minutes = minutes * rng.lognormal(0, 0.18, size=n)
    return {
        "PULocationID": pu.astype(np.int64),
        "DOLocationID": do.astype(np.int64),
        "trip_distance": miles,
        "pickup_datetime": np.array([w.isoformat() for w in when]),
        "duration": np.round(minutes, 2),
    }


def ride_events(n: int, seed: int = 42, prefix: str = "ride") -> Iterator[dict[str, Any]]:
    """The JSON events a producer would send: `{"ride_id": ..., "ride": {...}}`."""
    cols = rides(n, seed)
    width = max(6, int(math.log10(max(n, 1))) + 1)
    for i in range(n):
        yield {
            "ride_id": f"{prefix}-{i:0{width}d}",
            "ride": {
                "PULocationID": int(cols["PULocationID"][i]),
                "DOLocationID": int(cols["DOLocationID"][i]),
                "trip_distance": float(cols["trip_distance"][i]),
                "pickup_datetime": str(cols["pickup_datetime"][i]),
            },
        }


def model_frame(n: int, seed: int) -> tuple[Any, np.ndarray]:
    """n rides in the demo model's columns (what `lambda_fn.hooks.taxi_features` makes, vectorised), and their
    durations: the monitor's bench and tests profile these without running the hook per ride."""
    import pandas as pd

    c = rides(n, seed)
    when = c["pickup_datetime"].astype("datetime64[m]")
    day = when.astype("datetime64[D]")
    frame = pd.DataFrame(
        {
            "PU_DO": np.char.add(np.char.add(c["PULocationID"].astype(str), "_"), c["DOLocationID"].astype(str)),
            "trip_distance": c["trip_distance"],
            "pickup_hour": ((when - day).astype(np.int64) // 60),
            "pickup_dow": (day.astype(np.int64) + 3) % 7,
        }
    )
    return frame, c["duration"]
