"""The monitor function's work: settings → reference (verified), S3 store, CloudWatch sink → the window job.

`monitor_handler` (lambda_fn.handler) calls `run_scheduled` with the schedule's event; the `servingkit monitor`
commands call `run` and `backfill` with the same settings, so the Lambda, the CLI and the tests run one code path.
The scheduled event's `time` (EventBridge) or `at` (a Scheduler target's input, or a manual invoke) is the
window's end; without either, now. With MONITOR_COMPACT (default true) a run first merges the complete hours of
its long window into hourly profiles (`compaction`), which the window reader then prefers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from lambda_fn.config import MonitorSettings, metrics_namespace
from lambda_fn.monitoring import compaction, quality_job
from lambda_fn.monitoring.drift import Thresholds
from lambda_fn.monitoring.quality_job import QualityConfig
from lambda_fn.monitoring.reference import Reference
from lambda_fn.monitoring.release_reference import load_reference
from lambda_fn.monitoring.s3_labels import S3Captures, S3Labels
from lambda_fn.monitoring.s3_store import CloudWatchSink, Location, S3Store, read_s3_uri, s3_client, utc
from lambda_fn.monitoring.window import MetricDatum, QualityStep, Target, WindowResult, Windows, backfill, run_window


@lru_cache(maxsize=4)
def _reference(uri: str, sha256: str) -> Reference:
    return load_reference(uri, sha256, read_s3_uri)


def target(settings: MonitorSettings) -> Target:
    ref = _reference(settings.monitor_reference_uri, settings.monitor_reference_sha256)
    return Target(settings.monitor_model_name, settings.monitor_model_sha256, ref, settings.monitor_model_version)


def store(settings: MonitorSettings, s3: Any | None = None) -> S3Store:
    loc = Location(
        settings.monitor_bucket, settings.monitor_prefix, settings.monitor_model_name, settings.monitor_model_sha256
    )
    return S3Store(loc, s3, hourly=settings.monitor_compact)


def compact(
    settings: MonitorSettings, tg: Target, st: S3Store, start: datetime, end: datetime
) -> dict[str, int] | None:
    """Hourly profiles for the complete hours in [start, end) (MONITOR_COMPACT); what was done (None: off)."""
    if not settings.monitor_compact:
        return None
    return compaction.compact(st, tg.reference, tg.identity(), start, end).to_dict()


def compact_range(
    settings: MonitorSettings, start: datetime, end: datetime, *, force: bool = False, s3: Any | None = None
) -> compaction.CompactionStats:
    """Hourly profiles for the complete, settled hours in [start, end), whatever MONITOR_COMPACT says (an explicit
    `servingkit monitor compact`, e.g. to backfill the hourly objects of history); `force` rewrites present ones."""
    if utc(start) >= utc(end):
        raise ValueError(f"compaction: the start {start.isoformat()} is not before the end {end.isoformat()}")
    tg = target(settings)
    return compaction.compact(store(settings, s3), tg.reference, tg.identity(), start, end, force=force)


def windows(settings: MonitorSettings) -> Windows:
    return Windows(
        timedelta(minutes=settings.monitor_short_window_minutes), timedelta(hours=settings.monitor_long_window_hours)
    )


def thresholds(settings: MonitorSettings) -> Thresholds:
    return Thresholds(min_rows=settings.monitor_min_rows)


def sink(settings: MonitorSettings, metrics: bool | None, cloudwatch: Any | None) -> CloudWatchSink | None:
    on = settings.monitor_metrics if metrics is None else metrics
    return CloudWatchSink(metrics_namespace(), cloudwatch) if on else None


def quality_config(settings: MonitorSettings, secrets: Any | None = None) -> QualityConfig:
    """MONITOR_LABEL_* → the quality job's config; the id key read from MONITOR_ID_KEY_SECRET_ARN when set."""
    id_key = None
    if settings.monitor_id_key_secret_arn:
        id_key = _id_key(settings.monitor_id_key_secret_arn, secrets)
    return QualityConfig(
        delay=timedelta(minutes=settings.monitor_label_delay_minutes),
        span=timedelta(minutes=settings.monitor_label_span_minutes),
        task=settings.monitor_label_task,
        training=settings.training_metrics(),
        id_key=id_key,
    )


def _id_key(arn: str, secrets: Any | None) -> bytes:
    from lambda_fn.monitoring.setup import read_id_key

    if secrets is None:
        import boto3

        secrets = boto3.client("secretsmanager")
    return read_id_key(arn, secrets)


def quality_step(settings: MonitorSettings, s3: Any | None = None, secrets: Any | None = None) -> QualityStep | None:
    """The window's model-quality step (MONITOR_LABELS=true), over the capture and label layouts in S3."""
    if not settings.monitor_labels:
        return None
    config = quality_config(settings, secrets)
    client = s3 or s3_client()
    captures = S3Captures(
        settings.monitor_bucket, settings.monitor_prefix, settings.monitor_model_name, settings.monitor_model_sha256,
        client,
    )  # fmt: skip
    label_reader = S3Labels(settings.monitor_bucket, settings.monitor_prefix, client)

    def step(end: datetime) -> tuple[dict[str, Any], list[MetricDatum]]:
        section = quality_job.evaluate(captures, label_reader, end, config)
        section["counts"]["capture_objects_unreadable"] = captures.unreadable
        return section, quality_job.metric_data(settings.monitor_model_name, section)

    return step


def run(
    settings: MonitorSettings,
    at: datetime | None = None,
    *,
    metrics: bool | None = None,
    s3: Any | None = None,
    cloudwatch: Any | None = None,
    secrets: Any | None = None,
) -> WindowResult:
    """One window ending at `at` (default now), after compacting its long window's complete hours."""
    tg, st, at = target(settings), store(settings, s3), at or datetime.now(UTC)
    compacted = compact(settings, tg, st, at - windows(settings).long, at)
    result = run_window(
        tg,
        st,
        at,
        windows=windows(settings),
        thresholds=thresholds(settings),
        metrics=sink(settings, metrics, cloudwatch),
        quality=quality_step(settings, s3, secrets),
    )
    result.compaction = compacted
    return result


def run_backfill(
    settings: MonitorSettings,
    start: datetime,
    end: datetime,
    step: timedelta,
    *,
    metrics: bool = False,
    s3: Any | None = None,
    cloudwatch: Any | None = None,
    secrets: Any | None = None,
) -> list[WindowResult]:
    """The windows ending in (start, end] every `step`; metrics off by default (alarms would see history)."""
    tg, st = target(settings), store(settings, s3)
    compact(settings, tg, st, start - windows(settings).long, end)
    return backfill(
        tg,
        st,
        start,
        end,
        step,
        windows=windows(settings),
        thresholds=thresholds(settings),
        metrics=sink(settings, metrics, cloudwatch),
        quality=quality_step(settings, s3, secrets),
    )


def event_time(event: Any) -> datetime | None:
    """The window end a scheduled event names (`at`, else EventBridge's `time`), or None."""
    if not isinstance(event, dict):
        return None
    value = event.get("at") or event.get("time")
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"monitor event: 'at'/'time' {value!r} is not an ISO 8601 time") from None


def run_scheduled(event: Any, settings: MonitorSettings) -> dict[str, Any]:
    """The handler's work: one window, and a small JSON answer (status, drifted features, where the report is)."""
    result = run(settings, event_time(event))
    quality = result.summary.get("quality")
    return {
        "end": result.end.isoformat(),
        "status": result.status,
        "drifted": result.drifted(),
        "metrics": result.metrics,
        "report": result.uris,
        **({"labelled": quality["counts"]["joined"]} if quality else {}),
        **({"compacted": result.compaction} if result.compaction is not None else {}),
    }
