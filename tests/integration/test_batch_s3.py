"""Batch scoring from and to S3 (moto): prefixes and globs in, parts and summary out, model from S3."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from lambda_fn.model_store import artifact_sha256
from servingkit.batch import BatchJobError, JobConfig, model_env, run_local
from tests.helpers import save_mlflow_model, tiny_pipeline
from tests.unit.test_batch import write_jsonl_dataset, write_parquet_dataset

BUCKET = "batch-data"


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def upload(s3: Any, root: Path, prefix: str) -> None:
    for f in sorted(root.rglob("*")):
        if f.is_file():
            s3.upload_file(str(f), BUCKET, f"{prefix}/{f.relative_to(root).as_posix()}")


def parquet_at(s3: Any, key: str) -> Any:
    return pq.read_table(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())).to_pandas()


def test_s3_prefix_to_s3_output_with_a_pinned_s3_model(s3: Any, tmp_path: Path) -> None:
    model = save_mlflow_model(tmp_path / "model", tiny_pipeline())
    upload(s3, model, "models/tiny")
    bad = write_parquet_dataset(tmp_path / "in")
    upload(s3, tmp_path / "in", "rides/2026-11-23")
    cfg = JobConfig(
        model_env(
            MODEL_URI=f"s3://{BUCKET}/models/tiny",
            MODEL_SHA256=artifact_sha256(model),
            MODEL_CACHE_DIR=str(tmp_path / "cache"),
            ID_FIELD="id",
        )
    )
    out = f"s3://{BUCKET}/scored/run-1"
    summary = run_local([f"s3://{BUCKET}/rides/2026-11-23"], out, cfg, chunk_size=10, rows_per_file=40, progress=False)

    assert (summary.inputs, summary.rows_in, summary.scored, summary.rejected) == (3, 95, 92, 3)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="scored/run-1/")["Contents"])
    assert keys == [
        "scored/run-1/_summary.json",
        "scored/run-1/rejected/part-00000.parquet",
        "scored/run-1/scored/part-00000.parquet",
        "scored/run-1/scored/part-00001.parquet",
        "scored/run-1/scored/part-00002.parquet",
    ]
    scored = [parquet_at(s3, k) for k in keys if "/scored/" in k]
    assert [len(p) for p in scored] == [40, 40, 12]
    assert scored[0]["source_file"][0] == f"s3://{BUCKET}/rides/2026-11-23/part-0.parquet"
    rejected = parquet_at(s3, "scored/run-1/rejected/part-00000.parquet")
    assert dict(zip(rejected["id"], rejected["reason"], strict=True)) == bad
    written = json.loads(s3.get_object(Bucket=BUCKET, Key="scored/run-1/_summary.json")["Body"].read())
    assert written["scored"] == 92 and written["model"]["sha256"] == artifact_sha256(model)

    with pytest.raises(BatchJobError, match="not empty"):
        run_local([f"s3://{BUCKET}/rides/2026-11-23"], out, cfg, progress=False)


def test_s3_glob_selects_files_and_skips_markers(s3: Any, tmp_path: Path) -> None:
    model = save_mlflow_model(tmp_path / "model", tiny_pipeline())
    write_jsonl_dataset(tmp_path / "in")
    upload(s3, tmp_path / "in", "events")
    s3.put_object(Bucket=BUCKET, Key="events/_SUCCESS", Body=b"")
    s3.put_object(Bucket=BUCKET, Key="events/notes.txt", Body=b"not data")
    cfg = JobConfig(model_env(MODEL_URI=str(model), ID_FIELD="id", FEATURES_FIELD="features"))

    summary = run_local([f"s3://{BUCKET}/events/b*.jsonl"], str(tmp_path / "out"), cfg, progress=False)
    assert (summary.inputs, summary.rows_in, summary.scored, summary.rejected) == (1, 10, 5, 5)
    with pytest.raises(BatchJobError, match="matches no data file"):
        run_local([f"s3://{BUCKET}/nowhere/"], str(tmp_path / "out2"), cfg, progress=False)
