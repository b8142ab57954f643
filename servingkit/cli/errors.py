"""How a command reports an error the user can fix: one line on stderr and an exit status, no traceback."""

from __future__ import annotations

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
