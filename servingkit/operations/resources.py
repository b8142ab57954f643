"""Which queue and stream an operator command works on: given explicitly, or read from the stack's outputs.

Clients come from one boto3 session, so AWS_PROFILE / AWS_REGION / AWS_ENDPOINT_URL(_<SERVICE>) apply
unchanged: the same command runs against the embedded emulator, LocalStack or a deployed stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The stack's CloudFormation output keys (infra/stack.py) an operator command reads.
DLQ_OUTPUT = "DeadLetterQueueUrl"
INPUT_STREAM_OUTPUT = "InputStreamName"
OUTPUT_STREAM_OUTPUT = "OutputStreamName"


class ResourceError(Exception):
    """A queue, stream or stack that was not given or does not exist; the message is one line for a person."""


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


@dataclass
class Aws:
    """A boto3 session and the clients made from it, created only when first used."""

    profile: str | None = None
    region: str | None = None

    def __post_init__(self) -> None:
        self._session: Any = None
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            import boto3
            from botocore.exceptions import NoRegionError, ProfileNotFound

            try:
                if self._session is None:
                    self._session = boto3.Session(profile_name=self.profile, region_name=self.region)
                self._clients[service] = self._session.client(service)
            except ProfileNotFound as exc:
                raise ResourceError(f"{exc}: check --profile / AWS_PROFILE") from None
            except NoRegionError:
                raise ResourceError("no AWS region: give --region or set AWS_REGION") from None
        return self._clients[service]


def stack_outputs(aws: Aws, stack: str) -> dict[str, str]:
    """The stack's outputs by key (CloudFormation DescribeStacks)."""
    from botocore.exceptions import ClientError

    try:
        stacks = aws.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        if _code(exc) == "ValidationError":
            raise ResourceError(f"stack {stack!r} does not exist (in this account and region)") from None
        raise
    outputs = stacks[0].get("Outputs", []) if stacks else []
    return {str(o["OutputKey"]): str(o["OutputValue"]) for o in outputs}


def _from_stack(aws: Aws, stack: str | None, key: str, option: str) -> str:
    if stack is None:
        raise ResourceError(f"give {option} or --stack NAME (the deployed stack, whose output {key} names it)")
    value = stack_outputs(aws, stack).get(key)
    if not value:
        raise ResourceError(f"stack {stack!r} has no output {key}: give {option}")
    return value


def dead_letter_queue(aws: Aws, queue_url: str | None, stack: str | None) -> str:
    """The DLQ's URL (`--queue-url`, a queue name, or the stack's DeadLetterQueueUrl), checked to exist."""
    from botocore.exceptions import ClientError

    value = queue_url or _from_stack(aws, stack, DLQ_OUTPUT, "--queue-url")
    sqs = aws.client("sqs")
    try:
        if "://" not in value:
            value = str(sqs.get_queue_url(QueueName=value)["QueueUrl"])
        sqs.get_queue_attributes(QueueUrl=value, AttributeNames=["QueueArn"])
    except ClientError as exc:
        if "NonExistentQueue" in _code(exc) or "QueueDoesNotExist" in _code(exc):
            raise ResourceError(f"queue {value} does not exist (check the URL, the region and the endpoint)") from None
        raise
    return value


def stream(aws: Aws, name: str | None, stack: str | None, *, output_key: str, option: str = "--stream") -> str:
    """A Kinesis stream's name (given, or the stack's `output_key`), checked to exist."""
    from botocore.exceptions import ClientError

    value = name or _from_stack(aws, stack, output_key, option)
    try:
        aws.client("kinesis").describe_stream_summary(StreamName=value)
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            raise ResourceError(
                f"stream {value!r} does not exist (check the name, the region and the endpoint)"
            ) from None
        raise
    return value
