"""`servingkit dlq list | show | redrive`: the dead-letter queue, read without consuming it, and redriven.

Only options and printing here; the work is servingkit.operations (dlq, redrive, resources). The queue is
`--queue-url` (a URL or a queue name) or the `--stack`'s DeadLetterQueueUrl output; AWS is reached with the
standard configuration (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL), so the same commands work on the
emulator, LocalStack and AWS.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from infra.topology import Topology
from servingkit.cli.errors import CommandError


def aws_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--stack, --profile, --region: where the commands find the stack's resources."""
    fn = click.option("--region", envvar="AWS_REGION", help="AWS region (default: the SDK's).")(fn)
    fn = click.option("--profile", envvar="AWS_PROFILE", help="AWS profile (default: the SDK's).")(fn)
    return click.option(
        "--stack",
        envvar="SERVINGKIT_STACK",
        show_envvar=True,
        help="A deployed stack: its outputs name the queue and streams (CloudFormation DescribeStacks).",
    )(fn)


def guarded(work: Callable[[], Any]) -> Any:
    """Run `work`, turning a missing resource or an AWS error into one line and exit status 1."""
    from botocore.exceptions import BotoCoreError, ClientError

    from servingkit.operations.resources import ResourceError

    try:
        return work()
    except ResourceError as exc:
        raise CommandError(str(exc)) from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise CommandError(f"{exc.operation_name}: {error.get('Code')}: {error.get('Message')}") from None
    except BotoCoreError as exc:
        raise CommandError(f"{exc} (check AWS_ENDPOINT_URL, the region and the credentials)") from None


def _queue(stack: str | None, profile: str | None, region: str | None, queue_url: str | None) -> tuple[Any, str]:
    from servingkit.operations.resources import Aws, dead_letter_queue

    aws = Aws(profile, region)
    url = guarded(lambda: dead_letter_queue(aws, queue_url, stack))
    return aws, url


queue_option = click.option(
    "--queue-url", envvar="DLQ_URL", show_envvar=True, help="The dead-letter queue: its URL or its name."
)
id_field_option = click.option(
    "--id-field",
    envvar="ID_FIELD",
    show_envvar=True,
    default=Topology.id_field,  # the stack's, unless it was deployed with -c id_field=...
    help="The scorer's ID_FIELD: an entry failed before its id was read (e.g. missing_features_field) "
    "shows the id its data holds under this field.",
)


@click.group()
def dlq() -> None:
    """Dead letters (poison records, with the reason): list them, show one, redrive them after a fix."""


@dlq.command("list")
@queue_option
@aws_options
@id_field_option
@click.option("--reason", help="Only entries of this reason (e.g. schema_violation).")
@click.option("--max", "limit", type=click.IntRange(min=1), help="At most this many entries (the first SQS returns).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of a table.")
def list_command(
    queue_url: str | None,
    stack: str | None,
    profile: str | None,
    region: str | None,
    id_field: str | None,
    reason: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """List the dead letters: message id, reason, record id, position in the input stream, age.

    Nothing is consumed: each message is received and made visible again at once (while the command runs,
    other readers do not see it). Environment: DLQ_URL, ID_FIELD, SERVINGKIT_STACK, AWS_PROFILE, AWS_REGION,
    AWS_ENDPOINT_URL.
    """
    from servingkit.operations.dlq import age_text, list_letters

    aws, url = _queue(stack, profile, region, queue_url)
    letters = guarded(lambda: list_letters(aws.client("sqs"), url, limit=limit, reason=reason, id_field=id_field))
    if as_json:
        for letter in letters:
            click.echo(json.dumps(letter.summary(), allow_nan=False))
        return
    rows = [("MESSAGE ID", "REASON", "RECORD ID", "POSITION", "AGE")]
    for x in letters:
        rid = x.record_id if isinstance(x.record_id, str) else json.dumps(x.record_id)
        rows.append((x.message_id, x.reason, rid[:40], x.position, age_text(x.age_seconds())))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    click.echo(f"{len(letters)} dead letters", err=True)


@dlq.command("show")
@click.argument("key", metavar="ID")
@queue_option
@aws_options
@id_field_option
def show_command(
    key: str, queue_url: str | None, stack: str | None, profile: str | None, region: str | None, id_field: str | None
) -> None:
    """Show the dead letter(s) whose SQS message id or record id is ID: the whole entry and its decoded payload.

    The payload is decoded as the scorer decodes it (base64, strict JSON); data that is not JSON is shown
    as text (and base64 when it is binary). Exit status 1 when no entry matches.
    """
    from servingkit.operations.dlq import find_letters, show

    aws, url = _queue(stack, profile, region, queue_url)
    found = guarded(lambda: find_letters(aws.client("sqs"), url, key, id_field))
    if not found:
        raise CommandError(f"no dead letter with message id or record id {key!r} in {url}")
    for letter in found:
        click.echo(json.dumps(show(letter), indent=2, allow_nan=False))


@dlq.command("redrive")
@queue_option
@click.option("--stream", help="The input stream to put the records on (default: the stack's InputStreamName).")
@aws_options
@click.option("--reason", help="Only entries of this reason.")
@click.option("--max", "limit", type=click.IntRange(min=1), help="At most this many entries.")
@click.option("--dry-run", is_flag=True, help="Say what would be redriven; put and delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def redrive_command(
    queue_url: str | None,
    stream: str | None,
    stack: str | None,
    profile: str | None,
    region: str | None,
    reason: str | None,
    limit: int | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Put dead letters back on the input stream (after the fix is deployed) and delete them from the queue.

    Each record goes back byte for byte with its partition key; its message is deleted only once PutRecords
    accepted it. Entries not put (refused after retries, or without their full data) stay in the queue,
    visible again, and are listed; then the exit status is 1. At least once: a crash between the put and the
    delete leaves a message whose record is already in the stream, and a later redrive puts it again (same
    id, same shard). Environment: DLQ_URL, SERVINGKIT_STACK, AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL.
    """
    from servingkit.operations.redrive import Redrive
    from servingkit.operations.resources import INPUT_STREAM_OUTPUT
    from servingkit.operations.resources import stream as find_stream

    aws, url = _queue(stack, profile, region, queue_url)
    name = guarded(lambda: find_stream(aws, stream, stack, output_key=INPUT_STREAM_OUTPUT))
    job = Redrive(
        aws.client("sqs"),
        aws.client("kinesis"),
        url,
        name,
        reason=reason,
        max_messages=limit,
        dry_run=dry_run,
        progress=lambda line: click.echo(line, err=True),
    )
    report = guarded(job.run)
    if as_json:
        click.echo(json.dumps(report.as_dict()))
    else:
        verb = "would redrive" if dry_run else "redriven"
        click.echo(f"{verb} {len(report.redriven)} to {name}; left {len(report.left)}; skipped {report.skipped}")
        for message_id, why in report.left.items():
            click.echo(f"  left {message_id}: {why}")
        for message_id in report.put_not_deleted:
            click.echo(f"  put but not deleted {message_id}: a later redrive puts it again (same id)")
    if not report.ok:
        raise SystemExit(1)
