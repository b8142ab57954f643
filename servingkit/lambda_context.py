"""The one stand-in for Lambda's context object, used by the local poller, the HTTP adapter, benchmarks and tests.

Powertools' logger and the handlers read only these attributes; a real deadline keeps
`get_remaining_time_in_millis` honest for code that budgets its work by it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

ACCOUNT = "123456789012"
REGION = "us-east-1"


def function_arn(name: str, qualifier: str | None = None, *, region: str = REGION, account: str = ACCOUNT) -> str:
    arn = f"arn:aws:lambda:{region}:{account}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


@dataclass(slots=True)
class LambdaContext:
    """The LambdaContext attributes handlers and Powertools read; a fresh request id unless one is given."""

    function_name: str = "scorer"
    invoked_function_arn: str = ""
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    memory_limit_in_mb: int = 1024
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    timeout_ms: int = 60_000
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        if not self.invoked_function_arn:
            self.invoked_function_arn = function_arn(self.function_name)
        if not self.log_group_name:
            self.log_group_name = f"/aws/lambda/{self.function_name}"
        self._deadline = time.monotonic() + self.timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
