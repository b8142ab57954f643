"""The monitor's window job: profiles of a short and a long window → drift, quality, summary, report, metrics.

Pure orchestration over injected I/O (`Store`: profiles in, report files out; `MetricsSink`: metrics out), so it
runs the same in the Lambda (`lambda_fn.monitoring.job` with `s3_store`), in the CLI and in tests with fakes.

A run at time `at` evaluates the windows ending at `end` = `at` cut to the minute: the short window
[end - short, end) (default 15 minutes: drift within minutes) and the long window [end - long, end) (default
24 hours: slow drift that a short window's noise hides). Per variant it merges the window's profiles
(`evaluate_window`: drift ranked, quality violations), writes one `summary.json` (both windows) and an HTML
report per window, and publishes the short window's metrics (`metric_data`; names in `lambda_fn.config.Metric`):

| metric | dimensions | value | count |
| --- | --- | --- | --- |
| `DriftScore` | model, variant, feature | PSI of the feature or `prediction` (none if insufficient) | features + 1 |
| `DriftedFeatures` | model, variant | features (and prediction) at `alert` | 1 per variant |
| `QualityViolations` | model, variant | data-quality violations | 1 per variant |
| `MonitorRows` | model, variant | rows in the window (tells "no traffic" from "no drift") | 1 per variant |

So (features + 4) metrics per variant: 8 for the demo's 4 features and one variant. `backfill` runs the same
window function for every end in (start, end] at `step`: each window once, its report replaced if re-run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from lambda_fn.config import Metric
from lambda_fn.monitoring.drift import DEFAULT_THRESHOLDS, Thresholds
from lambda_fn.monitoring.profile import Profile
from lambda_fn.monitoring.reference import Reference
from lambda_fn.monitoring.report import evaluate_window, render_html, summary_json

SUMMARY_FORMAT = 1
DEFAULT_SHORT = timedelta(minutes=15)
DEFAULT_LONG = timedelta(hours=24)
SHORT, LONG = "short", "long"
SUMMARY_FILE, REPORT_FILE, LONG_REPORT_FILE = "summary.json", "report.html", "report-long.html"


@dataclass
class ReadStats:
    """What a window's read found besides its profiles."""

    read: int = 0
    skipped: int = 0  # unreadable, made with another reference, or timed outside the window
    hourly: int = 0  # of `read`, hourly objects (each the merge of one hour's per-batch profiles)
    problems: list[str] = field(default_factory=list)

    def skip(self, key: str, why: str) -> None:
        self.skipped += 1
        if len(self.problems) < 10:
            self.problems.append(f"{key}: {why}")


@dataclass(frozen=True)
class MetricDatum:
    name: str
    value: float
    dimensions: tuple[tuple[str, str], ...]
    unit: str = "None"


class Store(Protocol):
    def profiles(
        self, reference: Reference, start: datetime, end: datetime
    ) -> tuple[dict[str, list[Profile]], ReadStats]: ...

    def write_report(self, end: datetime, files: Mapping[str, tuple[bytes, str]]) -> dict[str, str]: ...


# The window's model-quality step (`quality_job`, wired by `job`): the window's end → (the quality section of the
# summary, its metrics). The section's `metrics` and `counts` also go into the short window's `labels` (the report).
QualityStep = Callable[[datetime], tuple[dict[str, Any], list["MetricDatum"]]]


class MetricsSink(Protocol):
    def publish(self, data: Sequence[MetricDatum], timestamp: datetime) -> int: ...


@dataclass(frozen=True)
class Windows:
    short: timedelta = DEFAULT_SHORT
    long: timedelta = DEFAULT_LONG

    def __post_init__(self) -> None:
        if not timedelta(0) < self.short <= self.long:
            raise ValueError("windows: 0 < short <= long")


@dataclass(frozen=True)
class Target:
    """The model a window job watches: its name and sha256 (the profiles' partitions) and its reference."""

    model_name: str
    model_sha256: str
    reference: Reference
    model_version: str | None = None

    def identity(self) -> dict[str, str]:
        out = {"name": self.model_name, "sha256": self.model_sha256}
        return out | ({"version": self.model_version} if self.model_version else {})


@dataclass
class WindowResult:
    end: datetime
    summary: dict[str, Any]
    uris: dict[str, str]
    metrics: int
    compaction: dict[str, int] | None = None  # what the run's compaction did (lambda_fn.monitoring.job)

    @property
    def status(self) -> str:
        return str(self.summary["status"])

    def drifted(self, window: str = SHORT) -> dict[str, list[str]]:
        """Per variant, the features (or `prediction`) at alert in `window`."""
        variants = self.summary["windows"][window]["variants"]
        return {v: [d["feature"] for d in s["drift"] if d["severity"] == "alert"] for v, s in variants.items()}


def window_end(at: datetime) -> datetime:
    t = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    return t.replace(second=0, microsecond=0)


def evaluate(
    target: Target, store: Store, end: datetime, windows: Windows, thresholds: Thresholds = DEFAULT_THRESHOLDS
) -> dict[str, Any]:
    """The summary of the windows ending at `end`: both windows' `evaluate_window` and what was read."""
    out: dict[str, Any] = {}
    for name, length in ((SHORT, windows.short), (LONG, windows.long)):
        profiles, stats = store.profiles(target.reference, end - length, end)
        s = evaluate_window(target.reference, profiles, start=end - length, end=end, thresholds=thresholds)
        s["profiles"] = {"read": stats.read, "skipped": stats.skipped, "hourly": stats.hourly,
                         "problems": list(stats.problems)}  # fmt: skip
        out[name] = s
    return {
        "format": SUMMARY_FORMAT,
        "end": end.isoformat(),
        "model": target.identity(),
        "status": out[SHORT]["status"],
        "windows": out,
    }


def metric_data(target: Target, short: Mapping[str, Any]) -> list[MetricDatum]:
    """The short window's metrics (see the module's table)."""
    out = []
    for variant, v in short["variants"].items():
        dims = ((Metric.MODEL_DIMENSION, target.model_name), (Metric.VARIANT_DIMENSION, variant))
        for d in v["drift"]:
            if d["psi"] is not None:
                out.append(MetricDatum(Metric.DRIFT_SCORE, d["psi"], (*dims, (Metric.FEATURE_DIMENSION, d["feature"]))))
        alerts = sum(1 for d in v["drift"] if d["severity"] == "alert")
        out.append(MetricDatum(Metric.DRIFTED_FEATURES, alerts, dims, "Count"))
        out.append(MetricDatum(Metric.QUALITY_VIOLATIONS, len(v["quality"]), dims, "Count"))
        out.append(MetricDatum(Metric.MONITOR_ROWS, v["rows"], dims, "Count"))
    return out


def report_files(summary: Mapping[str, Any]) -> dict[str, tuple[bytes, str]]:
    html = "text/html; charset=utf-8"
    return {
        SUMMARY_FILE: (summary_json(summary), "application/json"),
        REPORT_FILE: (render_html(summary["windows"][SHORT]).encode(), html),
        LONG_REPORT_FILE: (render_html(summary["windows"][LONG]).encode(), html),
    }


def run_window(
    target: Target,
    store: Store,
    at: datetime,
    *,
    windows: Windows = Windows(),
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    metrics: MetricsSink | None = None,
    quality: QualityStep | None = None,
) -> WindowResult:
    """One monitor run: evaluate the windows ending at `at` (cut to the minute), write the report, publish.

    With `quality`, the summary also holds the model quality from late labels (`summary["quality"]`, and the
    short window's `labels` for the report) and its metrics are published with the drift metrics."""
    end = window_end(at)
    summary = evaluate(target, store, end, windows, thresholds)
    data = metric_data(target, summary["windows"][SHORT])
    if quality is not None:
        section, quality_data = quality(end)
        summary["quality"] = section
        summary["windows"][SHORT]["labels"] = {"metrics": section["metrics"], "counts": section["counts"]}
        data.extend(quality_data)
    uris = store.write_report(end, report_files(summary))
    count = metrics.publish(data, end) if metrics else 0
    return WindowResult(end, summary, uris, count)


def window_ends(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    """The ends of the windows a backfill over (start, end] runs: start + step, start + 2 step, ... <= end."""
    if step <= timedelta(0):
        raise ValueError("backfill: step must be positive")
    first, last = window_end(start), window_end(end)
    count = (last - first) // step
    return [first + step * (i + 1) for i in range(count)]


def backfill(
    target: Target,
    store: Store,
    start: datetime,
    end: datetime,
    step: timedelta,
    *,
    windows: Windows = Windows(),
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    metrics: MetricsSink | None = None,
    quality: QualityStep | None = None,
) -> list[WindowResult]:
    """The window function over past windows: one run per end of `window_ends(start, end, step)`."""
    return [
        run_window(target, store, e, windows=windows, thresholds=thresholds, metrics=metrics, quality=quality)
        for e in window_ends(start, end, step)
    ]
