#!/usr/bin/env python3
"""Generate a multi-file dataset of raw taxi rides to try batch scoring on (data/rides/ by default).

    .venv/bin/python scripts/make_rides.py --rows 200000 --files 4 --format parquet --bad 0.001
    .venv/bin/python scripts/batch_score.py data/rides/ -o out/rides --release build/release.json --features-field=

Rows carry the demo hook's raw columns (ride_id, PULocationID, DOLocationID, trip_distance,
pickup_datetime, ...). `--bad` is the share of rows made unscoreable on purpose (a missing distance,
a zone id that is text, a date that is not one) so that the rejected output has something in it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BAD_KINDS = ("missing trip_distance", "text zone id", "bad date")


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", "-o", type=Path, default=ROOT / "data" / "rides")
    p.add_argument("--rows", type=int, default=200_000, help="rows in all")
    p.add_argument("--files", type=int, default=4)
    p.add_argument("--format", choices=("parquet", "csv", "jsonl"), default="parquet")
    p.add_argument("--bad", type=float, default=0.001, help="share of unscoreable rows (0 for none)")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    if args.rows < 1 or args.files < 1 or not 0 <= args.bad <= 1:
        p.error("--rows and --files must be positive and --bad within [0, 1]")
    if args.output.exists() and any(args.output.iterdir()):
        p.error(f"{args.output} is not empty; remove it or pick another --output")
    args.output.mkdir(parents=True, exist_ok=True)
    per_file = -(-args.rows // args.files)
    total_bad = written = files = 0
    for k in range(args.files):
        n = min(per_file, args.rows - written)
        if n <= 0:
            break
        df, n_bad = frame(n, args.seed + k, written, args.bad)
        path = args.output / f"rides-{k:03d}.{args.format}"
        write(df, path, args.format)
        written += n
        total_bad += n_bad
        files += 1
        print(f"{path}: {n:,} rows ({n_bad} unscoreable)", file=sys.stderr)
    print(json.dumps({"output": str(args.output), "rows": written, "files": files, "unscoreable": total_bad}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
