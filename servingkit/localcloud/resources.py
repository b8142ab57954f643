"""Create on an emulator what the CDK stack declares, from the same `infra.topology` definition.

Streams (with their shard counts and retention), the versioned model bucket, the dead-letter queue and
the on-failure queue of the event source mapping; then the model is uploaded with its sha256 and the
scorer's environment is returned under the names of `lambda_fn.config.Env`. With `monitoring_labels_stream=true`
(the topology's `labels`) also the labels stream and its on-failure queue, and the labels function's environment
(`lambda_fn.config.LabelsEnv`): locally the monitoring bucket is the model bucket, under `monitoring/` as deployed.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.topology import LABELS_DIR, MONITORING_PREFIX, StreamSpec, Topology
from lambda_fn.config import Env, LabelsEnv, Metric
from lambda_fn.model_store import artifact_sha256

_ACTIVE_WAIT_S = 60.0
_BUILD = Path(__file__).resolve().parents[2] / "build"
DEFAULT_MODEL_DIR = _BUILD / "model"  # what `make model` exports, wherever the caller runs from
DEFAULT_RELEASE = _BUILD / "release.json"


class ResourceError(RuntimeError):
    """A resource could not be created or the model release does not match its files."""


@dataclass(frozen=True)
class ExportedModel:
    """What `servingkit.train` exported: the model directory and its pinned identity."""

    model_dir: Path
    name: str
    version: str
    sha256: str

    @classmethod
    def load(cls, model_dir: str | Path = DEFAULT_MODEL_DIR, release: str | Path = DEFAULT_RELEASE) -> ExportedModel:
        model_dir, release = Path(model_dir), Path(release)
        if not (model_dir / "MLmodel").is_file():
            raise ResourceError(f"{model_dir} is not an MLflow model directory; run `make model` first")
        meta = json.loads(release.read_text())
        actual = artifact_sha256(model_dir)
        if actual != meta["sha256"]:
            fix = "re-run `make model`" if model_dir == DEFAULT_MODEL_DIR else "give the release.json exported with it"
            raise ResourceError(f"{model_dir} has sha256 {actual} but {release} pins {meta['sha256']}: {fix}")
        return cls(model_dir, str(meta["name"]), str(meta["version"]), actual)


@dataclass(frozen=True)
class Resources:
    """Names, ARNs and URLs of what was created, plus the scorer's environment."""

    topology: Topology
    input_stream_arn: str
    output_stream_arn: str
    bucket: str
    model_uri: str
    dlq_url: str
    on_failure_url: str
    on_failure_arn: str
    environment: dict[str, str] = field(default_factory=dict)
    labels: LabelsResources | None = None


@dataclass(frozen=True)
class LabelsResources:
    """The labels stream, its on-failure queue and where the labels function files them (as the stack has them)."""

    stream_arn: str
    stream_name: str
    on_failure_url: str
    on_failure_arn: str
    bucket: str
    prefix: str = MONITORING_PREFIX

    @property
    def environment(self) -> dict[str, str]:
        """The labels function's environment (`LABELS_BUCKET`, `LABELS_PREFIX`)."""
        return {LabelsEnv.LABELS_BUCKET: self.bucket, LabelsEnv.LABELS_PREFIX: self.prefix}

    @property
    def labels_uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}/{LABELS_DIR}/"


def _stream(kinesis: Any, spec: StreamSpec) -> str:
    """Create a stream with the declared shard count (on-demand streams too: locally the count is fixed)."""
    # ResourceInUse: already there (an earlier run against the same endpoint), reuse it.
    with contextlib.suppress(kinesis.exceptions.ResourceInUseException):
        kinesis.create_stream(StreamName=spec.name, ShardCount=spec.shards)
    deadline = time.monotonic() + _ACTIVE_WAIT_S
    while True:
        desc = kinesis.describe_stream_summary(StreamName=spec.name)["StreamDescriptionSummary"]
        if desc["StreamStatus"] == "ACTIVE":
            break
        if time.monotonic() > deadline:
            raise ResourceError(f"stream {spec.name} is still {desc['StreamStatus']} after {_ACTIVE_WAIT_S:.0f} s")
        time.sleep(0.2)
    if desc.get("RetentionPeriodHours", 24) < spec.retention_hours:
        kinesis.increase_stream_retention_period(StreamName=spec.name, RetentionPeriodHours=spec.retention_hours)
    return str(desc["StreamARN"])


def _queue(sqs: Any, name: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name, Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return str(url), str(arn)


def _bucket(s3: Any, name: str, region: str) -> None:
    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
        pass
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    s3.put_public_access_block(
        Bucket=name,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )


def upload_model(s3: Any, bucket: str, release: ExportedModel) -> str:
    """Upload the MLflow directory under models/<name>/<version>/ with its sha256 as object metadata."""
    prefix = f"models/{release.name}/{release.version}/"
    for path in sorted(p for p in release.model_dir.rglob("*") if p.is_file()):
        key = prefix + path.relative_to(release.model_dir).as_posix()
        s3.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {"release-sha256": release.sha256}})
    return f"s3://{bucket}/{prefix}"


def provision(topo: Topology, release: ExportedModel, clients: Mapping[str, Any], region: str) -> Resources:
    """Create every resource of `topo` (idempotent) and return the scorer's environment."""
    kinesis, sqs, s3 = clients["kinesis"], clients["sqs"], clients["s3"]
    input_arn = _stream(kinesis, topo.input_stream)
    output_arn = _stream(kinesis, topo.output_stream)
    dlq_url, _ = _queue(sqs, topo.dlq_name)
    on_failure_url, on_failure_arn = _queue(sqs, topo.on_failure_queue_name)
    _bucket(s3, topo.model_bucket, region)
    model_uri = upload_model(s3, topo.model_bucket, release)
    env = {
        Env.MODEL_URI: model_uri,
        Env.MODEL_SHA256: release.sha256,
        Env.MODEL_NAME: release.name,
        Env.MODEL_VERSION: release.version,
        Env.OUTPUT_STREAM_NAME: topo.output_stream.name,
        Env.DLQ_URL: dlq_url,
        Env.POWERTOOLS_SERVICE_NAME: Metric.SERVICE,
        Env.POWERTOOLS_METRICS_NAMESPACE: Metric.NAMESPACE,
        **topo.lambda_environment(),
    }
    labels = None
    if topo.labels:
        failures_url, failures_arn = _queue(sqs, topo.labels_failures_queue_name)
        labels = LabelsResources(
            _stream(kinesis, topo.labels_stream), topo.labels_stream.name, failures_url, failures_arn, topo.model_bucket
        )
    return Resources(
        labels=labels,
        topology=topo,
        input_stream_arn=input_arn,
        output_stream_arn=output_arn,
        bucket=topo.model_bucket,
        model_uri=model_uri,
        dlq_url=dlq_url,
        on_failure_url=on_failure_url,
        on_failure_arn=on_failure_arn,
        environment=env,
    )
