"""`servingkit predictions tail`: the predictions stream as JSON lines, from every shard, filtered by id.

Only options and printing here; the work is servingkit.operations.predictions. The stream is `--stream` or
the `--stack`'s OutputStreamName output; AWS is reached with the standard configuration (AWS_PROFILE,
AWS_REGION, AWS_ENDPOINT_URL).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

import click

from servingkit.cli.dlq import aws_options, guarded

if TYPE_CHECKING:
    from servingkit.operations.predictions import Seen


def _start(ctx: click.Context, param: click.Parameter, value: str) -> str | datetime:
    from servingkit.cli.monitor import parse_time
    from servingkit.operations.predictions import LATEST, TRIM_HORIZON

    named = {"trim-horizon": TRIM_HORIZON, "latest": LATEST}
    if value.lower() in named:
        return named[value.lower()]
    when = parse_time(value)
    assert when is not None
    return when


@click.group()
def predictions() -> None:
    """The predictions stream: read what the scorer wrote."""


@predictions.command("tail")
@click.option("--stream", help="The predictions stream (default: the stack's OutputStreamName).")
@aws_options
@click.option(
    "--from",
    "start",
    default="trim-horizon",
    callback=_start,
    help="trim-horizon (oldest kept), latest (only new records), or an ISO 8601 time (UTC if no offset).",
)
@click.option("--id", "wanted_id", help="Only predictions whose id (the scorer's ID_FIELD value) is this.")
@click.option("--follow", "-f", is_flag=True, help="Keep reading new records until Ctrl-C.")
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many records.")
@click.option("--poll-seconds", type=click.FloatRange(min=0.05), default=1.0, help="Wait between empty reads.")
def tail(
    stream: str | None,
    stack: str | None,
    profile: str | None,
    region: str | None,
    start: str | datetime,
    wanted_id: str | None,
    follow: bool,
    limit: int | None,
    poll_seconds: float,
) -> None:
    """Print the predictions of every shard as JSON lines (strict JSON) on stdout; status goes to stderr.

    Without --follow it stops once every shard is caught up. Records are in order within a shard, not across
    shards. Environment: SERVINGKIT_STACK, AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL.
    """
    from servingkit.operations.predictions import tail as tail_stream
    from servingkit.operations.resources import OUTPUT_STREAM_OUTPUT, Aws
    from servingkit.operations.resources import stream as find_stream

    aws = Aws(profile, region)
    name = guarded(lambda: find_stream(aws, stream, stack, output_key=OUTPUT_STREAM_OUTPUT))

    def status(line: str) -> None:
        click.echo(line, err=True)

    records = tail_stream(
        aws.client("kinesis"),
        name,
        start=start,
        wanted_id=wanted_id,
        follow=follow,
        limit=limit,
        poll_s=poll_seconds,
        status=status,
    )
    printed = guarded(lambda: _print(records, status))
    if printed is not None:
        status(f"{printed} records from {name}")


def _print(records: Iterator[Seen], status: Callable[[str], None]) -> int | None:
    """Each record as one line of strict JSON; the count, or None when the reader went away or Ctrl-C came."""
    count = 0
    try:
        for seen in records:
            if seen.error is not None:
                status(f"skipped {seen.shard_id}:{seen.sequence_number}: {seen.error}")
                continue
            click.echo(json.dumps(seen.record, allow_nan=False, separators=(",", ":")))
            count += 1
    except KeyboardInterrupt:
        status(f"stopped: {count} records")
        return None
    except BrokenPipeError:  # `| head`: the reader has what it wanted; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # else the flush at exit fails again
        return None
    return count
