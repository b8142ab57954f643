"""`servingkit localstack ...`: LocalStack for the kit, without Docker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from servingkit.cli.errors import CommandError

# servingkit.localcloud.localstack's DEFAULT_PORT and DEFAULT_SERVICES, written out so that importing the CLI
# (the EMR batch job does) needs nothing but click; tests/unit/test_servingkit_cli.py checks they agree.
DEFAULT_PORT = 4566
DEFAULT_SERVICES = ("s3", "kinesis", "sqs", "cloudwatch", "apigateway", "sts")

ENVIRONMENT = (
    "SERVINGKIT_LOCALSTACK_HOME (where it is installed, default .localstack), SERVINGKIT_LOCALSTACK_PYTHON "
    "(a Python 3.13 for its venv), SERVINGKIT_LOCALSTACK_LOG (its LS_LOG level, default warn)."
)


def _run(job: Callable[..., int], **kwargs: Any) -> None:
    """Run a servingkit.localstack_jobs function; its exit status, LocalStackError as one line (exit 1)."""
    from servingkit import localstack_jobs
    from servingkit.localcloud import localstack as ls

    localstack_jobs.quiet_powertools()
    try:
        code = job(**kwargs)
    except ls.LocalStackError as exc:
        raise CommandError(str(exc), prefix="[localstack] error") from exc
    raise SystemExit(code)


@click.group(epilog=ENVIRONMENT)
def localstack() -> None:
    """LocalStack for the kit, without Docker: install, run, status, e2e, bench, serve.

    e2e and bench print a summary; their last line is one JSON object with the figures.
    """


def _port(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, help=help_text)


services_option = click.option(
    "--services", default=",".join(DEFAULT_SERVICES), help="Comma-separated LocalStack services to start."
)


@localstack.command()
def install() -> None:
    """Install pinned LocalStack in .localstack/venv (Python 3.13) and kinesis-mock bound to 127.0.0.1 (idempotent)."""
    from servingkit import localstack_jobs

    _run(localstack_jobs.install)


@localstack.command()
@_port("Port on 127.0.0.1 (0: a free port).")
@services_option
def run(port: int, services: str) -> None:
    """Start LocalStack on 127.0.0.1:PORT in the foreground (`make localstack`); Ctrl-C or TERM stops it."""
    from servingkit import localstack_jobs

    _run(localstack_jobs.run, port=port, services=tuple(services.split(",")))


@localstack.command()
@_port("Port on 127.0.0.1.")
@services_option
def status(port: int, services: str) -> None:
    """Print /_localstack/health of 127.0.0.1:PORT as JSON (exit 1 if nothing answers)."""
    from servingkit import localstack_jobs

    _run(localstack_jobs.status, port=port)


def _pipeline_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        (
            click.option("--records", type=click.IntRange(min=1), default=10_000, help="Records to produce."),
            click.option("--shards", type=click.IntRange(min=1), help="Input shards (default: the topology's)."),
            click.option(
                "--poison-rate", type=click.FloatRange(0, 1, max_open=True), default=0.01, help="Share of malformed."
            ),
            click.option("--endpoint", help="Use this LocalStack (default: start one on a free port)."),
        )
    ):
        fn = option(fn)
    return fn


@localstack.command()
@_pipeline_options
def e2e(records: int, shards: int | None, poison_rate: float, endpoint: str | None) -> None:
    """The whole pipeline (producer → stream → handler → output stream / DLQ) against LocalStack.

    Reuses the one healthy at --endpoint, or starts one for the run and stops it afterwards. Exit 1 when a
    record is lost or duplicated.
    """
    from servingkit import localstack_jobs

    _run(localstack_jobs.e2e, records=records, shards=shards, poison_rate=poison_rate, endpoint=endpoint)


@localstack.command()
@_pipeline_options
def bench(records: int, shards: int | None, poison_rate: float, endpoint: str | None) -> None:
    """Embedded moto vs LocalStack: the same pipeline, in the same run."""
    from servingkit import localstack_jobs

    _run(localstack_jobs.bench, records=records, shards=shards, poison_rate=poison_rate, endpoint=endpoint)


@localstack.command()
@_port("Reuse or start LocalStack on this port.")
@click.option("--prefix", default="serving-local", help="Resource name prefix (infra.topology).")
def serve(port: int, prefix: str) -> None:
    """The stack's resources on LocalStack and the poller running the real handler, until Ctrl-C.

    Put records with the AWS CLI and read predictions back: it prints the commands.
    """
    from servingkit import localstack_jobs

    _run(localstack_jobs.serve, port=port, prefix=prefix)
