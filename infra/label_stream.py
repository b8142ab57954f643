"""The labels stream (issue 14): a Kinesis stream for late ground truth and the function that files it in S3.

On with `-c monitoring_labels_stream=true` (and `monitoring_labels=true`). Producers put one label per record
(`{"id", "label", "time"}` or SageMaker's ground truth) on `<prefix>-labels`; `lambda_fn.handler.labels_handler`
(the kit's image) writes each batch as one gzip JSON-lines object under `<prefix>/labels/` of the monitoring
bucket, where the quality job reads label files. Its role may write there and nowhere else.

The event source as the scorer's: partial batch responses (only a failed S3 write is reported: a malformed label
is dropped and counted, never retried), bounded retries, then the batch's metadata to an on-failure queue (the
records stay in the stream for its retention, to be replayed). No bisection: a record never fails on its own.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.environment import labels_environment
from infra.functions import ImageFunction
from infra.nag import acknowledge, acknowledge_resource
from infra.settings import DeploySettings
from infra.topology import LABELS_DIR, LABELS_HANDLER, LABELS_TRIGGER

LABELS_MEMORY_MB = 512
LABELS_TIMEOUT_SECONDS = 60


class LabelStream(Construct):
    """`<prefix>-labels` (encrypted, on demand) → the labels function → `<prefix>/labels/` in the monitoring bucket."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: DeploySettings,
        bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        m = settings.monitoring
        assert m is not None, "LabelStream needs monitoring settings"
        topo = settings.topology  # the names and the event source the local cloud uses too
        self.stream = kinesis.Stream(
            self,
            "Stream",
            stream_name=topo.labels_stream.name,
            stream_mode=kinesis.StreamMode.ON_DEMAND,
            retention_period=Duration.hours(topo.labels_stream.retention_hours),
            encryption=kinesis.StreamEncryption.MANAGED,  # aws/kinesis: no key policy for producers to maintain
        )
        self.on_failure = sqs.Queue(
            self,
            "Failures",
            queue_name=topo.labels_failures_queue_name,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        acknowledge(
            self.on_failure,
            "AwsSolutions-SQS3",
            "This queue is itself the failure destination of the labels stream (batch metadata to replay from).",
        )
        self.function = ImageFunction.of_stack(
            self,
            "Labels",
            settings=settings,
            name="labels",
            description="Labels stream -> one gzip JSON-lines object per batch under the monitoring bucket's labels/",
            handler=LABELS_HANDLER,
            memory_mb=LABELS_MEMORY_MB,
            timeout_seconds=LABELS_TIMEOUT_SECONDS,
            environment=labels_environment(settings, bucket=bucket.bucket_name),
        )
        labels_arn = bucket.arn_for_objects(f"{m.prefix}/{LABELS_DIR}/*")
        self.function.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:PutObject"], resources=[labels_arn])
        )
        acknowledge_resource(
            self.function.role,
            labels_arn,
            "The labels function writes one new object per batch under partitioned keys: write-only, under labels/.",
        )
        self.function.function.add_event_source(
            sources.KinesisEventSource(
                self.stream,
                starting_position=lambda_.StartingPosition(LABELS_TRIGGER.starting_position),
                batch_size=LABELS_TRIGGER.batch_size,
                max_batching_window=Duration.seconds(LABELS_TRIGGER.batching_window_seconds),
                bisect_batch_on_error=LABELS_TRIGGER.bisect_on_error,
                report_batch_item_failures=True,
                retry_attempts=LABELS_TRIGGER.retry_attempts,
                max_record_age=Duration.seconds(LABELS_TRIGGER.max_record_age_seconds),
                on_failure=sources.SqsDlq(self.on_failure),
            )
        )
