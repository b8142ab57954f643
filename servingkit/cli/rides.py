"""`servingkit make-rides`: raw taxi rides to try batch scoring on."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("make-rides")
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    help="An empty or new directory (default: the project's data/rides).",
)
@click.option("--rows", type=click.IntRange(min=1), default=200_000, help="Rows in all.")
@click.option("--files", type=click.IntRange(min=1), default=4, help="Files to spread them over.")
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv", "jsonl"]), default="parquet", help="File format.")
@click.option("--bad", type=click.FloatRange(0, 1), default=0.001, help="Share of unscoreable rows (0 for none).")
@click.option("--seed", type=int, default=7, help="Seed of the first file (file k uses seed + k).")
def make_rides(output: Path | None, rows: int, files: int, fmt: str, bad: float, seed: int) -> None:
    """Generate a multi-file dataset of raw taxi rides to try batch scoring on.

    Rows carry the demo hook's raw columns (ride_id, PULocationID, DOLocationID, trip_distance,
    pickup_datetime, ...). --bad is the share of rows made unscoreable on purpose (a missing distance, a zone
    id that is text, a date that is not one) so that the rejected output has something in it. One line per
    file on stderr; the last line on stdout is JSON.

    \b
      servingkit make-rides --rows 200000 --files 4 --format parquet --bad 0.001
      servingkit batch data/rides/ -o out/rides --release build/release.json --features-field=
    """
    from servingkit.rides import DEFAULT_OUTPUT, RidesError
    from servingkit.rides import make_rides as write_rides

    try:
        made = write_rides(output or DEFAULT_OUTPUT, rows=rows, files=files, fmt=fmt, bad=bad, seed=seed)
    except RidesError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(json.dumps(made))
