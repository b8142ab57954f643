"""How a command reports an error the user can fix: one line on stderr and an exit status, no traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import click


class CommandError(click.ClickException):
    """`<prefix>: <message>` on one line of stderr (the bare message without a prefix); exit status `exit_code`."""

    def __init__(self, message: str, *, exit_code: int = 1, prefix: str | None = "error") -> None:
        super().__init__(" ".join(message.split("\n")) if prefix else message)
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it per instance
        self.prefix = prefix

    def show(self, file: IO[Any] | None = None) -> None:
        line = f"{self.prefix}: {self.format_message()}" if self.prefix else self.format_message()
        click.echo(line, err=True)


# What a person does about an AWS SDK error that their setup caused (no credentials, no region, nothing
# listening at the endpoint): the advice follows the error's class name, so botocore is not imported here.
AWS_ADVICE = {
    "NoCredentialsError": "no AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
    "(any values for an emulator)",
    "NoRegionError": "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION)",
    "EndpointConnectionError": "nothing answers at the AWS endpoint: start the emulator, or check AWS_ENDPOINT_URL",
    "ConnectionClosedError": "the AWS endpoint closed the connection: is the emulator still running "
    "(AWS_ENDPOINT_URL)?",
}


@contextmanager
def user_errors(*types: type[BaseException], exit_code: int = 1) -> Iterator[None]:
    """Within the block, `types` (the library's own errors a person can fix) and AWS setup errors end the
    command with one line on stderr instead of a traceback."""
    try:
        yield
    except CommandError:
        raise
    except Exception as exc:
        advice = next((AWS_ADVICE[c.__name__] for c in type(exc).__mro__ if c.__name__ in AWS_ADVICE), None)
        if advice is not None:
            raise CommandError(f"{advice} ({exc})", exit_code=exit_code) from exc
        if types and isinstance(exc, types):
            raise CommandError(str(exc), exit_code=exit_code) from exc
        raise
