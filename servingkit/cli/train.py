"""`servingkit train`: the demo model, logged to MLflow and exported for S3."""

from __future__ import annotations

from pathlib import Path

import click

from servingkit.cli.options import tracking_uri_option


@click.command()
@click.option("--rows", type=click.IntRange(min=1), default=60_000, help="Generated rides (80% train, 20% test).")
@click.option("--seed", type=int, default=42, help="Seed of the generated rides and of the model.")
@tracking_uri_option
@click.option(
    "--export-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="build/model",
    help="Where the MLflow model directory is exported (its release.json goes beside it).",
)
@click.option("--no-register", is_flag=True, help="Log the run without registering a model version.")
def train(rows: int, seed: int, tracking_uri: str, export_dir: Path, no_register: bool) -> None:
    """Train the demo taxi ride-duration model, log it to MLflow and export it for S3 (build/model).

    Offline and deterministic: generated rides, fixed seeds. `make model` runs it.
    """
    from servingkit.train import train as train_model

    click.echo(f"training on {rows:,} generated rides (seed {seed}) ...")
    result = train_model(
        rows=rows, seed=seed, tracking_uri=tracking_uri, export_dir=export_dir, register=not no_register
    )
    click.echo(
        f"run {result.run_id}: rmse {result.rmse:.2f} min (predict-the-mean baseline {result.baseline_rmse:.2f} min)"
    )
    click.echo(
        f"logged model {result.model_uri}"
        + (f", registered version {result.registered_version}" if result.registered_version else "")
    )
    click.echo(f"exported {result.export_dir} sha256 {result.sha256}")
