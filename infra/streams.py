"""Streams: the input and output Kinesis streams, the dead-letter queue and the trigger's on-failure queue."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.nag import acknowledge
from infra.topology import StreamSpec, Topology


def _stream(scope: Construct, construct_id: str, spec: StreamSpec) -> kinesis.Stream:
    on_demand = spec.mode == "on-demand"
    return kinesis.Stream(
        scope,
        construct_id,
        stream_name=spec.name,
        stream_mode=kinesis.StreamMode.ON_DEMAND if on_demand else kinesis.StreamMode.PROVISIONED,
        shard_count=None if on_demand else spec.shards,
        retention_period=Duration.hours(spec.retention_hours),
        # The AWS-managed key (aws/kinesis): encrypted at rest with no key policy for consumers to maintain.
        encryption=kinesis.StreamEncryption.MANAGED,
    )


def _queue(scope: Construct, construct_id: str, name: str) -> sqs.Queue:
    queue = sqs.Queue(
        scope,
        construct_id,
        queue_name=name,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(14),
    )
    acknowledge(
        queue,
        "AwsSolutions-SQS3",
        "This queue is itself a dead-letter destination; its depth is alarmed and messages are replayed by hand.",
    )
    return queue


class Streams(Construct):
    """Everything records travel through: in, out, and the two places failures are kept (never dropped)."""

    def __init__(self, scope: Construct, construct_id: str, *, topology: Topology, shadow: bool = False) -> None:
        super().__init__(scope, construct_id)
        self.input = _stream(self, "Input", topology.input_stream)
        self.output = _stream(self, "Output", topology.output_stream)
        # A shadow model's predictions never share the output stream: consumers cannot mistake them.
        self.shadow = _stream(self, "ShadowOutput", topology.shadow_stream) if shadow else None
        # Poison records (undecodable, invalid, model-rejected), written by the handler with the original payload.
        self.dlq = _queue(self, "DeadLetters", topology.dlq_name)
        # Batch metadata from the event source mapping when retries or the record age run out.
        self.on_failure = _queue(self, "BatchFailures", topology.on_failure_queue_name)
