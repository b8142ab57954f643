"""`servingkit monitor run | backfill | compact | report`: the monitor function's window job, run from a shell.

The same code as the Lambda (`lambda_fn.monitoring.job`), with the same settings: each option defaults to the
monitor function's environment variable (MONITOR_*), or `--release` fills the model and its reference from a
release manifest that `servingkit publish` wrote. AWS is reached with the standard configuration
(AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_S3 / _CLOUDWATCH for an emulator).
"""

from __future__ import annotations

import json
import re
import webbrowser
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from servingkit.cli.errors import CommandError

_DURATION = re.compile(r"^(\d+)\s*([mhd]?)$")
_UNITS = {"": "minutes", "m": "minutes", "h": "hours", "d": "days"}

_OPTIONS: list[tuple[str, str, str]] = [
    ("--bucket", "MONITOR_BUCKET", "Bucket of the profiles and reports."),
    ("--prefix", "MONITOR_PREFIX", "Key prefix of the profiles and reports (default: monitoring)."),
    ("--model-name", "MONITOR_MODEL_NAME", "The profiles' model= partition (the scorer's model name)."),
    ("--model-sha256", "MONITOR_MODEL_SHA256", "The profiles' sha256= partition (the model's sha256)."),
    ("--model-version", "MONITOR_MODEL_VERSION", "Version label written into the summary."),
    ("--reference-uri", "MONITOR_REFERENCE_URI", "The release's reference (s3://, file:// or a path)."),
    ("--reference-sha256", "MONITOR_REFERENCE_SHA256", "Its pinned sha256 (the manifest's reference.sha256)."),
    ("--short-minutes", "MONITOR_SHORT_WINDOW_MINUTES", "Short window, minutes (default: 15)."),
    ("--long-hours", "MONITOR_LONG_WINDOW_HOURS", "Long window, hours (default: 24)."),
    ("--min-rows", "MONITOR_MIN_ROWS", "Rows below which a window claims no drift (default: 1000)."),
    ("--labels", "MONITOR_LABELS", "true: model quality from the late labels under <prefix>/labels/ (default: false)."),
    ("--label-delay-minutes", "MONITOR_LABEL_DELAY_MINUTES", "How late a label may arrive and count (default: 60)."),
    ("--label-span-minutes", "MONITOR_LABEL_SPAN_MINUTES", "Captured predictions scored per run (default: 60)."),
    ("--label-task", "MONITOR_LABEL_TASK", "regression (MAE, RMSE; default) or classification (accuracy, F1, AUC)."),
    ("--training-metrics", "MONITOR_TRAINING_METRICS", 'The release\'s metrics, JSON: {"mae": 3.1, "rmse": 4.2}.'),
    ("--id-key-secret-arn", "MONITOR_ID_KEY_SECRET_ARN", "Capture's id-hashing secret: label ids are hashed with it."),
]


def settings_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The monitor's settings as options, each defaulting to its environment variable."""
    fn = click.option(
        "--release",
        help="s3:// URI of a release.json (servingkit publish): fills the model, its reference and training metrics.",
    )(fn)
    for flag, env, text in reversed(_OPTIONS):
        fn = click.option(flag, env.lower(), envvar=env, show_envvar=True, help=text)(fn)
    return fn


def parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time (e.g. 2026-12-01T10:30Z)") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def parse_duration(value: str) -> timedelta:
    match = _DURATION.match(value.strip())
    if not match or int(match.group(1)) == 0:
        raise click.BadParameter(f"{value!r}: give a positive duration like 15m, 1h or 1d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _release_env(uri: str) -> dict[str, str]:
    from lambda_fn.monitoring.s3_store import read_s3_uri

    try:
        manifest = json.loads(read_s3_uri(uri))
    except Exception as exc:  # noqa: BLE001 - any read or parse failure is the user's to fix
        raise CommandError(f"cannot read the release manifest {uri}: {exc}") from None
    ref = manifest.get("reference") or {}
    if not ref.get("uri"):
        raise CommandError(f"{uri} records no reference: this release has no monitoring baseline")
    metrics = manifest.get("metrics") or {}
    training = {"MONITOR_TRAINING_METRICS": json.dumps(metrics)} if isinstance(metrics, dict) and metrics else {}
    return training | {
        "MONITOR_MODEL_NAME": str(manifest["name"]),
        "MONITOR_MODEL_SHA256": str(manifest["sha256"]),
        "MONITOR_MODEL_VERSION": str(manifest["version"]),
        "MONITOR_REFERENCE_URI": str(ref["uri"]),
        "MONITOR_REFERENCE_SHA256": str(ref["sha256"]),
    }


def settings_from_options(options: dict[str, Any]) -> Any:
    from lambda_fn.config import ConfigError, monitor_settings_from

    env = {name: str(options[name.lower()]) for _, name, _ in _OPTIONS if options.get(name.lower()) is not None}
    if options.get("release"):
        env = {**_release_env(str(options["release"])), **env}
    try:
        return monitor_settings_from(env)
    except ConfigError as exc:
        raise CommandError(f"{exc} (give the option or set the variable)") from None


def _guarded(work: Callable[[], Any]) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    from lambda_fn.monitoring.reference import ReferenceFormatError

    try:
        return work()
    except (ReferenceFormatError, ClientError, BotoCoreError, ValueError) as exc:
        raise CommandError(str(exc)) from None


def _echo_result(result: Any) -> None:
    drifted = {v: f for v, f in result.drifted().items() if f}
    short = result.summary["windows"]["short"]
    rows = {v: s["rows"] for v, s in short["variants"].items()}
    click.echo(
        f"window ending {result.end.isoformat()}: {result.status}; rows {rows or 'none'}; "
        f"drifted {drifted or 'none'}; {result.metrics} metrics"
    )
    quality = result.summary.get("quality")
    if quality:
        c = quality["counts"]
        worst = {v: q["degradation"]["worst"] for v, q in quality["variants"].items()}
        click.echo(f"  labels: joined {c['joined']}, late {c['late']}, missing {c['missing']}; vs training {worst}")
    click.echo(f"  report {result.uris.get('report.html', '')}")


@click.group()
def monitor() -> None:
    """Drift and data-quality windows over the scorer's profiles: run one, backfill history, fetch a report.

    Settings: the options below or the monitor function's environment variables.
    """


@monitor.command("run")
@settings_options
@click.option("--at", help="End of the window (ISO 8601, UTC if no offset); default now.")
@click.option("--no-metrics", is_flag=True, help="Do not publish CloudWatch metrics.")
@click.option("--json", "as_json", is_flag=True, help="Print the window's summary as JSON.")
def run(at: str | None, no_metrics: bool, as_json: bool, **options: Any) -> None:
    """Run one monitor window now (or ending at --at): summary and reports to S3, metrics to CloudWatch.

    Environment: MONITOR_BUCKET, MONITOR_PREFIX, MONITOR_MODEL_NAME, MONITOR_MODEL_SHA256, MONITOR_MODEL_VERSION,
    MONITOR_REFERENCE_URI, MONITOR_REFERENCE_SHA256, MONITOR_SHORT_WINDOW_MINUTES, MONITOR_LONG_WINDOW_HOURS,
    MONITOR_MIN_ROWS, MONITOR_LABELS, MONITOR_LABEL_DELAY_MINUTES, MONITOR_LABEL_SPAN_MINUTES, MONITOR_LABEL_TASK,
    MONITOR_TRAINING_METRICS, MONITOR_ID_KEY_SECRET_ARN; AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL,
    AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_CLOUDWATCH.
    """
    from lambda_fn.monitoring import job

    settings = settings_from_options(options)
    when = parse_time(at)
    result = _guarded(lambda: job.run(settings, when, metrics=False if no_metrics else None))
    if as_json:
        click.echo(json.dumps(result.summary))
    else:
        _echo_result(result)


@monitor.command("backfill")
@settings_options
@click.option("--start", required=True, help="Backfill windows ending after this time (ISO 8601).")
@click.option("--end", required=True, help="... and up to this time (ISO 8601).")
@click.option("--step", default="15m", help="Between window ends: 15m, 1h, 1d (a number alone: minutes).")
@click.option("--metrics", is_flag=True, help="Publish metrics too (CloudWatch keeps data up to two weeks old).")
def backfill(start: str, end: str, step: str, metrics: bool, **options: Any) -> None:
    """Run the window function over past windows ending in (START, END] every STEP; a re-run replaces them.

    Environment: as `servingkit monitor run` (MONITOR_*, AWS_ENDPOINT_URL, ...).
    """
    from lambda_fn.monitoring import job

    settings = settings_from_options(options)
    first, last, every = parse_time(start), parse_time(end), parse_duration(step)
    assert first is not None and last is not None
    results = _guarded(lambda: job.run_backfill(settings, first, last, every, metrics=metrics))
    for result in results:
        _echo_result(result)
    click.echo(f"{len(results)} windows")


@monitor.command("compact")
@settings_options
@click.option(
    "--start", help="Compact the complete hours from this time (ISO 8601); default --end minus the long window."
)
@click.option("--end", help="... up to this time (ISO 8601); default now. Hours ending under 15 minutes before wait.")
@click.option("--force", is_flag=True, help="Rewrite hourly objects already present (e.g. after late profiles).")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
def compact(start: str | None, end: str | None, force: bool, as_json: bool, **options: Any) -> None:
    """Merge each complete hour's per-batch profiles into one hourly profile per variant (what every monitor run
    does for its long window), over [START, END): backfill the hourly objects of history, or redo them with --force.

    Environment: as `servingkit monitor run` (MONITOR_*, AWS_ENDPOINT_URL, ...).
    """
    from lambda_fn.monitoring import job

    settings = settings_from_options(options)
    last = parse_time(end) or datetime.now(UTC)
    first = parse_time(start) or last - timedelta(hours=settings.monitor_long_window_hours)
    stats = _guarded(lambda: job.compact_range(settings, first, last, force=force))
    if as_json:
        click.echo(json.dumps({"start": first.isoformat(), "end": last.isoformat(), **stats.to_dict(),
                               "keys": stats.written}))  # fmt: skip
        return
    for key in stats.written:
        click.echo(f"s3://{settings.monitor_bucket}/{key}")
    click.echo(
        f"compacted the complete hours in [{first.isoformat()}, {last.isoformat()}): {len(stats.written)} written, "
        f"{stats.present} already present, {stats.empty} without profiles; {stats.sources} per-batch profiles "
        f"merged, {stats.skipped} skipped"
    )


@monitor.command("report")
@settings_options
@click.option("--at", help="The report of the window ending at this time; default the latest (last two days).")
@click.option("--long", "long_window", is_flag=True, help="The long window's report instead of the short one's.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default="build/monitor-report.html",
    help="Where to save the report.",
)
@click.option("--open", "open_it", is_flag=True, help="Open the saved report in a browser.")
def report(at: str | None, long_window: bool, out: Path, open_it: bool, **options: Any) -> None:
    """Download a window's HTML report from S3 (and open it).

    Environment: as `servingkit monitor run` (MONITOR_*, AWS_ENDPOINT_URL, ...).
    """
    from lambda_fn.monitoring import job
    from lambda_fn.monitoring.window import LONG_REPORT_FILE, REPORT_FILE, window_end

    settings = settings_from_options(options)
    store = job.store(settings)
    when = parse_time(at)
    base = _guarded(lambda: store.location.report_dir(window_end(when)) if when else store.latest_report())
    if not base:
        raise CommandError("no report in the last two days: run `servingkit monitor run` first, or give --at")
    key = f"{base}/{LONG_REPORT_FILE if long_window else REPORT_FILE}"
    body = _guarded(lambda: store.client().get_object(Bucket=settings.monitor_bucket, Key=key)["Body"].read())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(body)
    click.echo(f"s3://{settings.monitor_bucket}/{key} -> {out}")
    if open_it:
        webbrowser.open(out.resolve().as_uri())


@monitor.group("labels")
def labels() -> None:
    """Late ground truth for the model-quality job (MONITOR_LABELS=true)."""


@labels.command("put")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--bucket", envvar="MONITOR_BUCKET", show_envvar=True, help="The monitoring bucket (S3 label files).")
@click.option("--prefix", envvar="MONITOR_PREFIX", show_envvar=True, default="monitoring", help="Its key prefix.")
@click.option("--at", help="The labels' arrival hour (ISO 8601); default now.")
@click.option(
    "--stream",
    envvar="LABELS_STREAM",
    show_envvar=True,
    help="Put each line on this labels stream instead (the stack's LabelsStreamName, or the local cloud's).",
)
def labels_put(file: Path, bucket: str | None, prefix: str, at: str | None, stream: str | None) -> None:
    """Upload a label file (JSON lines, .jsonl or .jsonl.gz) to <prefix>/labels/date=/hour=/ of its arrival, or with
    --stream put one record per line on the labels stream, which the labels function files there.

    Lines: {"id": ..., "label": ..., "time": ...} (the record's raw ID_FIELD value; time optional, else the
    upload's, or on a stream the record's arrival) or SageMaker's ground truth ({"groundTruthData": {...},
    "eventMetadata": {"eventId": ...}}).

    Environment: MONITOR_BUCKET, MONITOR_PREFIX, LABELS_STREAM; AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL,
    AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_KINESIS.
    """
    if stream:
        _send_labels(file, stream, at)
        return
    if not bucket:
        raise CommandError("give --bucket (MONITOR_BUCKET) for S3 label files, or --stream (LABELS_STREAM)")
    from lambda_fn.monitoring.s3_labels import put_labels
    from lambda_fn.monitoring.s3_store import s3_client

    when = parse_time(at)
    key = _guarded(lambda: put_labels(s3_client(), bucket, prefix.strip("/"), file.name, file.read_bytes(), when))
    click.echo(f"s3://{bucket}/{key}")


def _send_labels(file: Path, stream: str, at: str | None) -> None:
    import boto3

    from servingkit.label_sender import LabelSendError, label_lines, send_labels

    if at is not None:
        raise CommandError("--at files labels in S3; on a stream a label arrives when it is put (give its time)")
    try:
        lines = label_lines(file)
    except (LabelSendError, OSError) as exc:
        raise CommandError(str(exc)) from None
    sent = _guarded(lambda: send_labels(boto3.client("kinesis"), stream, lines))
    click.echo(f"{sent} labels put on {stream}")
