"""`servingkit demo` (`make demo`): the whole pipeline on this machine, no AWS account."""

from __future__ import annotations

from pathlib import Path

import click

from servingkit.cli.errors import CommandError


def _context(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", ctx=ctx, param=param)
        out[key.strip()] = value.strip()
    return out


@click.command()
@click.option("--records", type=click.IntRange(min=1), default=10_000, help="Records to produce.")
@click.option("--shards", type=click.IntRange(min=1), help="Input stream shards (default: the topology's).")
@click.option(
    "--poison-rate",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.01,
    help="Share of malformed records, in [0, 1).",
)
@click.option("--seed", type=int, default=42, help="Seed of the generated rides.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Produce at this many records/s (default: as fast as possible).",
)
@click.option(
    "--target",
    type=click.Choice(["embedded", "localstack"]),
    default="embedded",
    help="Embedded moto server, or LocalStack (reused on --endpoint-url, or installed and started).",
)
@click.option(
    "--endpoint-url",
    envvar="AWS_ENDPOINT_URL",
    show_envvar=True,
    help="An existing emulator endpoint (default: $AWS_ENDPOINT_URL; unset: the embedded moto server).",
)
@click.option(
    "-c",
    "--context",
    "context",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_context,
    help="Topology context, as `cdk deploy -c` (e.g. -c batch_size=100 -c batching_window_seconds=0).",
)
@click.option("--timeout", type=click.FloatRange(min=0), help="Seconds to wait for every record to be accounted for.")
@click.option("--serve", is_flag=True, help="Keep running and serve the API until Ctrl-C.")
@click.option("--host", default="127.0.0.1", help="API bind address with --serve.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, help="API port with --serve (0: any free port).")
@click.option(
    "--model-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Exported MLflow model (default: the project's build/model, trained first when missing).",
)
@click.option(
    "--release",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Its release.json with the pinned sha256 (default: the project's build/release.json).",
)
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.option(
    "--image",
    is_flag=True,
    help="Score in the real Lambda image: build it (Docker engine and base stand-in started here, or "
    "$SERVINGKIT_DOCKER_HOST and $SERVINGKIT_BASE_IMAGE) and invoke the container through the Lambda "
    "Runtime API instead of the handler in this process.",
)
@click.option(
    "--drift",
    is_flag=True,
    help="Prediction monitoring end to end: replay --records rides at --rate (default 10) records/s of stream "
    "time with capture on, drift injected half-way (longer trips, new zones), late labels, the monitor on its "
    "schedule; prints the drift table, the model quality, the alarm's detection delay and where the report is.",
)
def demo(
    records: int,
    shards: int | None,
    poison_rate: float,
    seed: int,
    rate: float | None,
    target: str,
    endpoint_url: str | None,
    context: dict[str, str],
    timeout: float | None,
    serve: bool,
    host: str,
    port: int,
    model_dir: Path | None,
    release: Path | None,
    no_progress: bool,
    image: bool,
    drift: bool,
) -> None:
    """The whole pipeline on this machine, no AWS account.

    Trains the demo model if needed, starts an AWS emulator on 127.0.0.1 (moto, embedded) or uses LocalStack
    (--target localstack) or any endpoint in $AWS_ENDPOINT_URL, creates the stack's resources from
    infra.topology, uploads the model, runs the local Kinesis poller with the real handler, produces rides (1%
    malformed) and accounts for every one. --serve then keeps it all running with the API on a printed URL
    until Ctrl-C. The last output line is one JSON object.

    Exit status: 0 when every record is accounted for, 1 when one is lost or misrouted or the run was cut
    short, 2 for a configuration error, 130 when interrupted.
    """
    from servingkit.demo import DemoError, DemoOptions, run_demo

    if drift and (serve or image):
        raise click.UsageError(
            "--drift replays rides in stream time in this process: it takes neither --serve nor --image"
        )
    from servingkit.localcloud.resources import DEFAULT_MODEL_DIR, DEFAULT_RELEASE
    from servingkit.serve import PortInUseError

    options = DemoOptions(
        records=records,
        shards=shards,
        poison_rate=poison_rate,
        seed=seed,
        rate=rate,
        target=target,
        endpoint_url=endpoint_url,
        context=context,
        timeout=timeout,
        serve=serve,
        host=host,
        port=port,
        model_dir=model_dir or DEFAULT_MODEL_DIR,
        release=release or DEFAULT_RELEASE,
        progress=not no_progress,
        image=image,
        drift=drift,
    )
    try:
        code = run_demo(options)
    except DemoError as exc:
        raise CommandError(str(exc), prefix=None) from exc
    except PortInUseError as exc:  # checked before the pipeline runs
        raise CommandError(str(exc), exit_code=2) from exc
    raise SystemExit(code)
