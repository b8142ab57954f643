"""Stream trigger: the Kinesis event source mapping on the scorer's `live` alias."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.topology import TriggerSpec


class StreamTrigger(Construct):
    """Partial batch responses (`ReportBatchItemFailures`) plus bisection, bounded retries and an on-failure queue.

    Poison records never block a shard: the handler dead-letters them itself and reports only transient
    failures, so retries repeat the smallest possible suffix of the batch.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        target: lambda_.Alias,
        stream: kinesis.IStream,
        on_failure: sqs.IQueue,
        spec: TriggerSpec,
    ) -> None:
        super().__init__(scope, construct_id)
        self.source = sources.KinesisEventSource(
            stream,
            starting_position=lambda_.StartingPosition(spec.starting_position),
            batch_size=spec.batch_size,
            max_batching_window=Duration.seconds(spec.batching_window_seconds),
            parallelization_factor=spec.parallelization_factor,
            bisect_batch_on_error=spec.bisect_on_error,
            report_batch_item_failures=True,
            # -1 means "until the record expires" in Lambda's API; CDK expresses it by omitting the setting.
            retry_attempts=None if spec.retry_attempts < 0 else spec.retry_attempts,
            max_record_age=None if spec.max_record_age_seconds < 0 else Duration.seconds(spec.max_record_age_seconds),
            on_failure=sources.SqsDlq(on_failure),
        )
        target.add_event_source(self.source)
