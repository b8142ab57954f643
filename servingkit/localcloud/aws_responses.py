"""Reading what the AWS APIs answer, the same way in the poller and the pipeline's reader.

A botocore `ClientError` carries its code in `response["Error"]["Code"]`; Kinesis throttles with one of
`THROTTLED`; `ApproximateArrivalTimestamp` comes back as a datetime (boto3) or as epoch seconds (events).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

THROTTLED = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException", "LimitExceededException"})


def error_code(exc: Exception) -> str:
    """The AWS error code of a botocore ClientError ("" for any other exception)."""
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def epoch(value: Any) -> float:
    """A timestamp as epoch seconds, whether boto3 parsed it into a datetime or not."""
    return value.timestamp() if isinstance(value, datetime) else float(value)
