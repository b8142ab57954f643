"""`servingkit batch`: score a dataset offline with the Lambda's scoring core (local files or S3, local or Spark)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from servingkit.cli.errors import CommandError

# The batch package's own tuples (servingkit.batch.io.FORMATS, local.PARALLELISM, core.PREDICTION_TYPES),
# written out so that `--help` does not load pyarrow; tests/unit/test_servingkit_cli.py checks they agree.
FORMATS = ("parquet", "csv", "jsonl")
PARALLELISM = ("auto", "threads", "processes")
PREDICTION_TYPES = ("double", "long", "boolean", "string", "json")


@click.command(short_help="Score a dataset offline with the Lambda's scoring core (local or Spark).")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--output", "-o", required=True, help="Directory or s3:// prefix: scored/, rejected/, _summary.json.")
@click.option("--engine", type=click.Choice(["local", "spark"]), default="local", help="Scoring engine.")
@click.option(
    "--format", "input_format", type=click.Choice(FORMATS), help="Input format (default: from the file names)."
)
@click.option("--output-format", type=click.Choice(FORMATS), default="parquet", help="Output format.")
@click.option(
    "--release",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Release manifest (`servingkit train` writes build/release.json); its model is the one beside it.",
)
@click.option("--model", help="Model URI (default: $MODEL_URI).")
@click.option("--sha256", help="Expected artifact digest (default: $MODEL_SHA256).")
@click.option("--hook", help="Feature hook package.module:function (default: $FEATURE_HOOK); '' for none.")
@click.option("--features-field", help="Field holding the features (default: $FEATURES_FIELD); '' for whole rows.")
@click.option("--id-field", help="Record id field copied to the output (default: $ID_FIELD).")
@click.option("--input-schema", help="Declared input schema JSON (default: $INPUT_SCHEMA).")
@click.option("--trusted-types", help="Extra skops types to trust (default: $MODEL_TRUSTED_TYPES).")
@click.option(
    "--prediction-type",
    type=click.Choice(["auto", *PREDICTION_TYPES]),
    default="auto",
    help="Type of the prediction column (auto: learned from the model's own values).",
)
@click.option("--strict", is_flag=True, help="Reject rows with fields the model does not know.")
@click.option(
    "--chunk-size", type=click.IntRange(min=1), default=50_000, help="Rows per chunk (local) or Arrow batch (spark)."
)
@click.option("--workers", type=click.IntRange(min=1), default=2, help="Scoring threads or processes (local engine).")
@click.option(
    "--parallelism",
    type=click.Choice(PARALLELISM),
    default="auto",
    help="Local engine: threads when Parquet takes the Arrow path, processes otherwise (auto); "
    "with processes, --workers 1 scores in-process.",
)
@click.option(
    "--rows-per-file", type=click.IntRange(min=1), default=1_000_000, help="Rows per output part (local engine)."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--no-progress", is_flag=True, help="No progress bar (local engine).")
@click.option("--spark-master", help="E.g. local[2]; default: what spark-submit or EMR configured.")
def batch(
    inputs: tuple[str, ...],
    output: str,
    engine: str,
    input_format: str | None,
    output_format: str,
    release: Path | None,
    model: str | None,
    sha256: str | None,
    hook: str | None,
    features_field: str | None,
    id_field: str | None,
    input_schema: str | None,
    trusted_types: str | None,
    prediction_type: str,
    strict: bool,
    chunk_size: int,
    workers: int,
    parallelism: str,
    rows_per_file: int,
    overwrite: bool,
    no_progress: bool,
    spark_master: str | None,
) -> None:
    """Score INPUTS (files, directories, globs, s3://bucket/prefix or s3://bucket/*.parquet) offline with the
    Lambda's scoring core.

    The model is configured with the Lambda's own environment variables (MODEL_URI, MODEL_SHA256,
    FEATURE_HOOK, FEATURES_FIELD, ID_FIELD, INPUT_SCHEMA, MODEL_TRUSTED_TYPES, ...), then --release, then the
    options below; so a job configured from a function's environment scores exactly like that function.
    S3 is reached with the standard AWS configuration (AWS_ENDPOINT_URL_S3 for an emulator).
    The EMR Serverless job runs this command (servingkit/jobs/batch_score.py).

    Exit status: 0 done, 1 the job failed, 2 bad configuration. The last line of output is the summary as JSON.

    \b
      servingkit batch data/rides/ --output out/ --release build/release.json
      servingkit batch 's3://bucket/rides/*.parquet' --output s3://bucket/scored/ --engine local
      spark-submit servingkit/jobs/batch_score.py s3://bucket/rides/ --output s3://bucket/scored/ --engine spark
    """
    from servingkit.batch_job import CONFIG_ERRORS, BatchOptions, job_config, job_errors, run_job

    options = BatchOptions(
        inputs=inputs,
        output=output,
        engine=engine,
        input_format=input_format,
        output_format=output_format,
        release=release,
        model=model,
        sha256=sha256,
        hook=hook,
        features_field=features_field,
        id_field=id_field,
        input_schema=input_schema,
        trusted_types=trusted_types,
        prediction_type=prediction_type,
        strict=strict,
        chunk_size=chunk_size,
        workers=workers,
        parallelism=parallelism,
        rows_per_file=rows_per_file,
        overwrite=overwrite,
        progress=not no_progress,
        spark_master=spark_master,
    )
    try:
        config = job_config(options)
    except CONFIG_ERRORS as exc:
        raise CommandError(str(exc), exit_code=2, prefix="configuration error") from exc
    try:
        summary = run_job(options, config)
    except job_errors() as exc:
        raise CommandError(str(exc), prefix="batch scoring failed") from exc
    click.echo(summary.text(), err=True)
    click.echo(json.dumps(summary.to_dict()))
