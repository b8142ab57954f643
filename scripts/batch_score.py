#!/usr/bin/env python3
"""Score a dataset offline with the Lambda's scoring core: local files or S3, local engine or Spark.

    scripts/batch_score.py data/rides/ --output out/ --release build/release.json
    scripts/batch_score.py 's3://bucket/rides/*.parquet' --output s3://bucket/scored/ --engine local
    spark-submit scripts/batch_score.py s3://bucket/rides/ --output s3://bucket/scored/ --engine spark

The model is configured with the Lambda's own environment names (MODEL_URI, MODEL_SHA256, FEATURE_HOOK,
FEATURES_FIELD, ID_FIELD, ...), then `--release` (a release manifest), then the flags below; so a job
configured from a function's environment scores exactly like that function. This file is also the
entry point of the EMR Serverless job (infra/batch_emr.py uploads it).
Exit codes: 0 done, 1 the job failed, 2 bad configuration. The last line of output is the summary as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "servingkit").is_dir():
    sys.path.insert(0, str(ROOT))

from lambda_fn.config import ConfigError, Env
from lambda_fn.model_store import ModelStoreError
from lambda_fn.schema import SchemaError
from servingkit.batch.core import PREDICTION_TYPES, BatchJobError, JobConfig, model_env
from servingkit.batch.io import FORMATS
from servingkit.batch.local import PARALLELISM


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="files, directories, globs, s3://bucket/prefix or s3://bucket/*.parquet")
    p.add_argument("--output", "-o", required=True, help="directory or s3:// prefix: scored/, rejected/, _summary.json")
    p.add_argument("--engine", choices=("local", "spark"), default="local")
    p.add_argument("--format", choices=FORMATS, help="input format (default: from the file names)")
    p.add_argument("--output-format", choices=FORMATS, default="parquet")
    p.add_argument("--release", type=Path, help="release manifest (scripts/train.py writes build/release.json)")
    p.add_argument("--model", help=f"model URI ({Env.MODEL_URI})")
    p.add_argument("--sha256", help=f"expected artifact digest ({Env.MODEL_SHA256})")
    p.add_argument("--hook", help=f"feature hook package.module:function ({Env.FEATURE_HOOK}); '' for none")
    p.add_argument("--features-field", help=f"field holding the features ({Env.FEATURES_FIELD}); '' for whole rows")
    p.add_argument("--id-field", help=f"record id field copied to the output ({Env.ID_FIELD})")
    p.add_argument("--input-schema", help=f"declared input schema JSON ({Env.INPUT_SCHEMA})")
    p.add_argument("--trusted-types", help=f"extra skops types to trust ({Env.MODEL_TRUSTED_TYPES})")
    p.add_argument("--prediction-type", choices=("auto", *PREDICTION_TYPES), default="auto")
    p.add_argument("--strict", action="store_true", help="reject rows with fields the model does not know")
    p.add_argument("--chunk-size", type=int, default=50_000, help="rows per chunk (local) or Arrow batch (spark)")
    p.add_argument("--workers", type=int, default=2, help="scoring threads or processes (local engine)")
    p.add_argument(
        "--parallelism",
        choices=PARALLELISM,
        default="auto",
        help="local engine: threads when Parquet takes the Arrow path, processes otherwise (auto); "
        "with processes, --workers 1 scores in-process",
    )
    p.add_argument("--rows-per-file", type=int, default=1_000_000, help="rows per output part (local engine)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (local engine)")
    p.add_argument("--spark-master", help="e.g. local[2]; default: what spark-submit or EMR configured")
    return p


def config_from(args: argparse.Namespace) -> JobConfig:
    release = json.loads(args.release.read_text()) if args.release else None
    env = model_env(
        os.environ,
        release=release,
        MODEL_URI=args.model,
        MODEL_SHA256=args.sha256,
        FEATURE_HOOK=args.hook,
        FEATURES_FIELD=args.features_field,
        ID_FIELD=args.id_field,
        INPUT_SCHEMA=args.input_schema,
        MODEL_TRUSTED_TYPES=args.trusted_types,
    )
    if Env.MODEL_URI not in env and args.release:
        # A release manifest sits next to its model (build/release.json beside build/model).
        env[Env.MODEL_URI] = str((args.release.parent / "model").resolve())
    env = {k: v for k, v in env.items() if v != ""}  # '' clears a setting inherited from env or release
    config = JobConfig(env, prediction_type=args.prediction_type, strict=args.strict)
    config.settings()  # fail fast, naming the environment variable at fault
    return config


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if min(args.chunk_size, args.rows_per_file, args.workers) < 1:
        print("error: --chunk-size, --rows-per-file and --workers must be positive", file=sys.stderr)
        return 2
    try:
        config = config_from(args)
    except (ConfigError, SchemaError, OSError, json.JSONDecodeError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.engine == "local":
            from servingkit.batch.local import run_local

            summary = run_local(
                args.inputs,
                args.output,
                config,
                input_format=args.format,
                output_format=args.output_format,
                chunk_size=args.chunk_size,
                rows_per_file=args.rows_per_file,
                workers=args.workers,
                parallelism=args.parallelism,
                overwrite=args.overwrite,
                progress=not args.no_progress,
            )
        else:
            from servingkit.batch.spark import run_spark, session

            summary = run_spark(
                args.inputs,
                args.output,
                config,
                spark=session(args.spark_master, chunk_size=min(args.chunk_size, 50_000)),
                input_format=args.format,
                output_format=args.output_format,
                overwrite=args.overwrite,
            )
    except (BatchJobError, ModelStoreError, ConfigError) as exc:
        print(f"batch scoring failed: {exc}", file=sys.stderr)
        return 1
    print(summary.text(), file=sys.stderr)
    print(json.dumps(summary.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
