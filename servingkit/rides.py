"""A multi-file dataset of raw taxi rides to try batch scoring on (`servingkit make-rides`; data/rides/ by default).

Rows carry the demo hook's raw columns (ride_id, PULocationID, DOLocationID, trip_distance,
pickup_datetime, ...). `bad` is the share of rows made unscoreable on purpose (a missing distance,
a zone id that is text, a date that is not one) so that the rejected output has something in it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "data" / "rides"
FORMATS = ("parquet", "csv", "jsonl")
BAD_KINDS = ("missing trip_distance", "text zone id", "bad date")


class RidesError(ValueError):
    """The dataset cannot be written as asked."""


def frame(n: int, seed: int, first_id: int, bad: float) -> Any:
    import numpy as np
    import pandas as pd

    from servingkit.taxi import rides

    cols = rides(n, seed=seed)
    raw = {k: v for k, v in cols.items() if k != "duration"}  # the target is not an input
    out = pd.DataFrame({"ride_id": [f"ride-{first_id + i:08d}" for i in range(n)], **raw})
    rng = np.random.default_rng(seed + 1)
    broken = np.flatnonzero(rng.random(n) < bad)
    if len(broken):
        out = out.astype({"trip_distance": object, "PULocationID": object, "pickup_datetime": object})
        for j, i in enumerate(broken):
            kind = BAD_KINDS[j % len(BAD_KINDS)]
            if kind == "missing trip_distance":
                out.at[i, "trip_distance"] = None
            elif kind == "text zone id":
                out.at[i, "PULocationID"] = "midtown"
            else:
                out.at[i, "pickup_datetime"] = "yesterday"
        out["trip_distance"] = out["trip_distance"].astype("float64")
    return out, len(broken)


def write(df: Any, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        # Mixed zone ids (numbers and a stray word) are stored as text; the reader turns numbers back.
        if df["PULocationID"].dtype == object:
            df = df.astype({"PULocationID": str})
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
    elif fmt == "csv":
        df.to_csv(path, index=False)
    else:
        with path.open("w") as fh:
            for row in df.to_dict(orient="records"):
                fh.write(json.dumps(row, default=str) + "\n")


def make_rides(
    output: Path = DEFAULT_OUTPUT,
    *,
    rows: int = 200_000,
    files: int = 4,
    fmt: str = "parquet",
    bad: float = 0.001,
    seed: int = 7,
) -> dict[str, Any]:
    """Write `rows` rides in `files` files of `fmt` into the empty (or new) directory `output`; one line per
    file on stderr; returns {"output", "rows", "files", "unscoreable"}."""
    if rows < 1 or files < 1 or not 0 <= bad <= 1:
        raise RidesError("rows and files must be positive and bad within [0, 1]")
    if output.exists() and any(output.iterdir()):
        raise RidesError(f"{output} is not empty; remove it or pick another --output")
    output.mkdir(parents=True, exist_ok=True)
    per_file = -(-rows // files)
    total_bad = written = made = 0
    for k in range(files):
        n = min(per_file, rows - written)
        if n <= 0:
            break
        df, n_bad = frame(n, seed + k, written, bad)
        path = output / f"rides-{k:03d}.{fmt}"
        write(df, path, fmt)
        written += n
        total_bad += n_bad
        made += 1
        print(f"{path}: {n:,} rows ({n_bad} unscoreable)", file=sys.stderr)
    return {"output": str(output), "rows": written, "files": made, "unscoreable": total_bad}
