"""moto-backed AWS for the Lambda code: S3 model, output stream, dead-letter queue; the monitor's bucket."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lambda_fn import runtime
from lambda_fn.config import MONITOR_ENV_FIELDS, get_monitor_settings
from lambda_fn.model_store import artifact_sha256
from lambda_fn.monitoring.reference import Reference
from lambda_fn.monitoring.s3_store import Location
from tests.helpers import save_mlflow_model, tiny_pipeline
from tests.monitoring_data import reference

BUCKET = "models-bucket"
OUT_STREAM = "predictions"


@pytest.fixture(scope="session")
def tiny_mlflow_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_mlflow_model(tmp_path_factory.mktemp("mlflow") / "model", tiny_pipeline())


@dataclass
class Aws:
    s3: Any
    kinesis: Any
    sqs: Any
    dlq_url: str

    def upload_dir(self, path: Path, prefix: str) -> str:
        for f in sorted(path.rglob("*")):
            if f.is_file():
                self.s3.upload_file(str(f), BUCKET, f"{prefix}/{f.relative_to(path).as_posix()}")
        return f"s3://{BUCKET}/{prefix}"

    def output_records(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        shards = self.kinesis.list_shards(StreamName=OUT_STREAM)["Shards"]
        for shard in shards:
            it = self.kinesis.get_shard_iterator(
                StreamName=OUT_STREAM, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while it:
                resp = self.kinesis.get_records(ShardIterator=it, Limit=10_000)
                out.extend(json.loads(r["Data"]) for r in resp["Records"])
                if not resp["Records"]:
                    break
                it = resp.get("NextShardIterator")
        return out

    def dead_letters(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            resp = self.sqs.receive_message(
                QueueUrl=self.dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
            )
            msgs = resp.get("Messages", [])
            if not msgs:
                return out
            for m in msgs:
                body = json.loads(m["Body"])
                body["_attr_reason"] = m["MessageAttributes"]["reason"]["StringValue"]
                out.append(body)
                self.sqs.delete_message(QueueUrl=self.dlq_url, ReceiptHandle=m["ReceiptHandle"])


@pytest.fixture
def aws(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Aws]:
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        kinesis = boto3.client("kinesis")
        kinesis.create_stream(StreamName=OUT_STREAM, ShardCount=2)
        sqs = boto3.client("sqs")
        dlq_url = sqs.create_queue(QueueName="dead-letters")["QueueUrl"]
        clean_env.setenv("OUTPUT_STREAM_NAME", OUT_STREAM)
        clean_env.setenv("DLQ_URL", dlq_url)
        clean_env.setenv("MODEL_CACHE_DIR", str(tmp_path / "cache"))
        clean_env.setenv("FEATURES_FIELD", "features")
        clean_env.setenv("ID_FIELD", "id")
        clean_env.setenv("OUTPUT_BASE_DELAY_MS", "1")
        yield Aws(s3, kinesis, sqs, dlq_url)
        runtime.reset()


@pytest.fixture
def deployed(aws: Aws, tiny_mlflow_dir: Path, clean_env: pytest.MonkeyPatch) -> Aws:
    """The tiny MLflow model published under a prefix and pinned by its checksum."""
    clean_env.setenv("MODEL_URI", aws.upload_dir(tiny_mlflow_dir, "models/tiny/v1"))
    clean_env.setenv("MODEL_SHA256", artifact_sha256(tiny_mlflow_dir))
    return aws


@dataclass(frozen=True)
class MonitorBucket:
    """The monitor's side of moto S3: its bucket, the model's pinned reference in it, and the MONITOR_* settings."""

    s3: Any
    reference: Reference
    env: dict[str, str]  # also set in the process environment, every other MONITOR_* setting removed
    location: Location  # where the profiles of the model go (prefix "monitoring")


@contextmanager
def monitor_bucket(env: pytest.MonkeyPatch, bucket: str, model: str, sha256: str) -> Iterator[MonitorBucket]:
    """Inside moto: `bucket` with the reference of tests.monitoring_data under models/<model>/<sha256>/, and the
    settings of a monitor of that model in the environment (the settings cache cleared on the way in and out)."""
    for name in MONITOR_ENV_FIELDS:
        env.delenv(name, raising=False)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=bucket)
        ref = reference()
        key = f"models/{model}/{sha256}/reference.json"
        s3.put_object(Bucket=bucket, Key=key, Body=ref.to_json())
        settings = {
            "MONITOR_BUCKET": bucket,
            "MONITOR_PREFIX": "monitoring",
            "MONITOR_MODEL_NAME": model,
            "MONITOR_MODEL_SHA256": sha256,
            "MONITOR_REFERENCE_URI": f"s3://{bucket}/{key}",
            "MONITOR_REFERENCE_SHA256": ref.sha256,
        }
        for k, v in settings.items():
            env.setenv(k, v)
        get_monitor_settings.cache_clear()
        try:
            yield MonitorBucket(s3, ref, settings, Location(bucket, "monitoring", model, sha256))
        finally:
            get_monitor_settings.cache_clear()
