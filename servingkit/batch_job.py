"""One batch scoring job as `servingkit batch` runs it: options → job configuration → the local or Spark engine.

The model is configured with the Lambda's own environment names (MODEL_URI, MODEL_SHA256, FEATURE_HOOK,
FEATURES_FIELD, ID_FIELD, ...), then a release manifest, then the explicit options; so a job configured
from a function's environment scores exactly like that function.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lambda_fn.config import ConfigError, Env
from lambda_fn.model_errors import ModelStoreError
from lambda_fn.schema import SchemaError

if TYPE_CHECKING:
    from servingkit.batch import JobConfig

# What `job_config` may raise for a configuration the user got wrong; `run_job` raises JOB_ERRORS.
CONFIG_ERRORS: tuple[type[Exception], ...] = (ConfigError, SchemaError, OSError, json.JSONDecodeError)


def job_errors() -> tuple[type[Exception], ...]:
    """What `run_job` raises when the job fails (imports the batch package: pyarrow)."""
    from servingkit.batch import BatchJobError

    return (BatchJobError, ModelStoreError, ConfigError)


@dataclass(frozen=True)
class BatchOptions:
    inputs: tuple[str, ...]
    output: str
    engine: str = "local"
    input_format: str | None = None
    output_format: str = "parquet"
    release: Path | None = None
    model: str | None = None
    sha256: str | None = None
    hook: str | None = None
    features_field: str | None = None
    id_field: str | None = None
    input_schema: str | None = None
    trusted_types: str | None = None
    prediction_type: str = "auto"
    strict: bool = False
    chunk_size: int = 50_000
    workers: int = 2
    parallelism: str = "auto"
    rows_per_file: int = 1_000_000
    overwrite: bool = False
    progress: bool = True
    spark_master: str | None = None


def job_config(opts: BatchOptions, environ: Mapping[str, str] = os.environ) -> JobConfig:
    """The job's configuration, validated now (the error names the environment variable at fault)."""
    from servingkit.batch import JobConfig, model_env

    release = json.loads(opts.release.read_text()) if opts.release else None
    env = model_env(
        environ,
        release=release,
        MODEL_URI=opts.model,
        MODEL_SHA256=opts.sha256,
        FEATURE_HOOK=opts.hook,
        FEATURES_FIELD=opts.features_field,
        ID_FIELD=opts.id_field,
        INPUT_SCHEMA=opts.input_schema,
        MODEL_TRUSTED_TYPES=opts.trusted_types,
    )
    if Env.MODEL_URI not in env and opts.release:
        # A release manifest sits next to its model (build/release.json beside build/model).
        env[Env.MODEL_URI] = str((opts.release.parent / "model").resolve())
    env = {k: v for k, v in env.items() if v != ""}  # '' clears a setting inherited from env or release
    config = JobConfig(env, prediction_type=opts.prediction_type, strict=opts.strict)
    config.settings()  # fail fast, naming the environment variable at fault
    return config


def run_job(opts: BatchOptions, config: JobConfig) -> Any:
    """Score every input with the chosen engine; the engine's Summary."""
    if opts.engine == "local":
        from servingkit.batch.local import run_local

        return run_local(
            list(opts.inputs),
            opts.output,
            config,
            input_format=opts.input_format,
            output_format=opts.output_format,
            chunk_size=opts.chunk_size,
            rows_per_file=opts.rows_per_file,
            workers=opts.workers,
            parallelism=opts.parallelism,
            overwrite=opts.overwrite,
            progress=opts.progress,
        )
    from servingkit.batch.spark import run_spark, session

    return run_spark(
        list(opts.inputs),
        opts.output,
        config,
        spark=session(opts.spark_master, chunk_size=min(opts.chunk_size, 50_000)),
        input_format=opts.input_format,
        output_format=opts.output_format,
        overwrite=opts.overwrite,
    )
