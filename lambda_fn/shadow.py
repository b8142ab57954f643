"""Shadow scoring: a second model scores the primary's inputs on a worker thread, under a deadline.

`SHADOW_MODEL_URI` sets it. The primary waits for it at most `SHADOW_TIMEOUT_MS`; a slow, failing or
unloadable shadow is counted and logged, never raised, so it cannot fail, retry or hold up a primary
batch beyond that bound, and shadow predictions are never written as primary ones nor returned to API
callers. They go to metrics and logs, and to a separate stream (`SHADOW_OUTPUT_STREAM_NAME`) when one
is configured, as records without a top-level `prediction` field (`outputs.shadow_entry`), so a
consumer pointed at the wrong stream fails loudly instead of reading shadow values as primary ones.
Shadow output is best effort by design: retrying a primary batch because of the shadow would
duplicate primary output.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from aws_lambda_powertools import Logger

from lambda_fn.config import Metric, service_name
from lambda_fn.deadline import bounded_result
from lambda_fn.model_store import LoadedModel
from lambda_fn.outputs import SHADOW_DETAIL_CHARS, shadow_entry
from lambda_fn.scoring import BatchResult, Hook, describe, score_batch
from lambda_fn.sinks import Sink

logger = Logger(service=service_name(), child=True)
# A shadow model that cannot be loaded is not retried on every batch: loading may cost seconds.
SHADOW_LOAD_BACKOFF_S = 60.0

ShadowStatus = Literal["ok", "failed", "timeout", "skipped"]


@dataclass(slots=True)
class ShadowReport:
    """What one shadow run did; `emit` turns it into metrics, the log line into evidence."""

    status: ShadowStatus
    rows: int
    scored: int = 0
    row_errors: int = 0
    compared: int = 0
    agreement: float | None = None
    mean_abs_diff: float | None = None
    predict_seconds: float | None = None
    unpublished: int = 0
    detail: str | None = None
    model: dict[str, str] | None = None

    def metrics(self) -> list[tuple[str, str, float]]:
        out: list[tuple[str, str, float]] = [
            (Metric.SHADOW_RECORDS, "Count", self.scored),
            (Metric.SHADOW_ROW_ERRORS, "Count", self.row_errors),
            (Metric.SHADOW_FAILURES, "Count", 1 if self.status == "failed" else 0),
            (Metric.SHADOW_TIMEOUTS, "Count", 1 if self.status == "timeout" else 0),
            (Metric.SHADOW_SKIPPED, "Count", self.rows if self.status == "skipped" else 0),
            (Metric.SHADOW_UNPUBLISHED, "Count", self.unpublished),
        ]
        if self.agreement is not None:
            out.append((Metric.SHADOW_AGREEMENT, "Percent", self.agreement * 100))
        if self.mean_abs_diff is not None:
            out.append((Metric.SHADOW_MEAN_ABS_DIFF, "None", self.mean_abs_diff))
        if self.predict_seconds is not None:
            out.append((Metric.SHADOW_LATENCY, "Milliseconds", self.predict_seconds * 1000))
        return out

    def log_extra(self) -> dict[str, Any]:
        return {
            "shadow": {
                "status": self.status,
                "rows": self.rows,
                "scored": self.scored,
                "row_errors": self.row_errors,
                "compared": self.compared,
                "agreement": self.agreement,
                "mean_abs_diff": self.mean_abs_diff,
                "predict_ms": None if self.predict_seconds is None else round(self.predict_seconds * 1000, 2),
                "unpublished": self.unpublished,
                "detail": self.detail,
                "model": self.model,
            }
        }


def _number(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def compare(
    primary: Sequence[Any], shadow: Sequence[Any], usable: Sequence[bool]
) -> tuple[int, float | None, float | None]:
    """(pairs compared, share of equal predictions, mean |primary - shadow| over numeric pairs)."""
    pairs = [(p, s) for p, s, ok in zip(primary, shadow, usable, strict=True) if ok]
    if not pairs:
        return 0, None, None
    agree = 0
    diffs: list[float] = []
    for p, s in pairs:
        if _number(p) and _number(s):
            diffs.append(abs(float(p) - float(s)))
            agree += math.isclose(p, s, rel_tol=1e-9, abs_tol=1e-12)
        else:
            agree += p == s
    return len(pairs), agree / len(pairs), (sum(diffs) / len(diffs) if diffs else None)


@dataclass(slots=True)
class ShadowInput:
    """What the shadow needs for one batch or request, aligned row by row."""

    features: list[Any]
    primary: list[Any]
    primary_ok: list[bool]
    primary_model: dict[str, str] | list[dict[str, str]]
    ids: list[Any] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    sources: list[dict[str, Any]] | None = None
    # Called on the worker with the shadow's model and result once it scored (capture: lambda_fn.monitoring.emit);
    # it must not block, and whatever it raises is logged, never reported as the shadow's failure.
    on_scored: Callable[[LoadedModel, BatchResult], None] | None = None

    def model_of(self, i: int) -> dict[str, str]:
        return self.primary_model if isinstance(self.primary_model, dict) else self.primary_model[i]


class ShadowRun:
    """A started shadow run; `wait()` returns within the deadline whatever the shadow does."""

    def __init__(self, future: Future[ShadowReport] | None, deadline: float, rows: int, report: ShadowReport | None):
        self._future, self._deadline, self._rows, self._report = future, deadline, rows, report

    def wait(self) -> ShadowReport:
        if self._report is not None:
            return self._report
        assert self._future is not None
        try:
            return bounded_result(self._future, self._deadline)
        except TimeoutError:
            return ShadowReport("timeout", self._rows, detail="the shadow did not finish within SHADOW_TIMEOUT_MS")
        except Exception as exc:  # noqa: BLE001 - the shadow must never fail the primary
            return ShadowReport("failed", self._rows, detail=describe(exc)[:SHADOW_DETAIL_CHARS])


class ShadowScorer:
    """Scores a copy of the primary's inputs with another model on one worker thread, under a deadline.

    One worker and no queue: while a run is still going (a slow shadow past its deadline) the next
    batch is not shadowed and is counted as skipped, so a slow shadow cannot pile up work or memory.
    """

    def __init__(
        self,
        model: Callable[[], LoadedModel],
        timeout_s: float,
        sink: Sink | None = None,
        hook: Hook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model, self.timeout_s, self.sink, self.hook, self.clock = model, timeout_s, sink, hook, clock
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
        self._lock = threading.Lock()
        self._pending: Future[ShadowReport] | None = None
        self._load_failed_until = 0.0
        self._load_error = ""

    def close(self) -> None:
        """Stop accepting work; a run in progress finishes on its own."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def start(self, job: ShadowInput) -> ShadowRun:
        """Never raises and never blocks: the work happens on the worker thread."""
        rows = len(job.features)
        deadline = time.monotonic() + self.timeout_s
        if rows == 0:
            return ShadowRun(None, deadline, 0, ShadowReport("ok", 0))
        with self._lock:
            if self._pending is not None and not self._pending.done():
                detail = "the previous shadow run is still going (slower than SHADOW_TIMEOUT_MS)"
                return ShadowRun(None, deadline, rows, ShadowReport("skipped", rows, detail=detail))
            try:
                future = self._pool.submit(self._run, job)
            except RuntimeError as exc:  # closed: the container is being reset
                return ShadowRun(None, deadline, rows, ShadowReport("failed", rows, detail=str(exc)))
            self._pending = future
        future.add_done_callback(_log_late)
        return ShadowRun(future, deadline, rows, None)

    def _load(self) -> LoadedModel:
        now = self.clock()
        if now < self._load_failed_until:
            raise RuntimeError(
                f"shadow model unavailable, next load attempt in "
                f"{self._load_failed_until - now:.0f}s: {self._load_error}"
            )
        try:
            return self.model()
        except Exception as exc:
            self._load_failed_until = now + SHADOW_LOAD_BACKOFF_S
            self._load_error = describe(exc)[:SHADOW_DETAIL_CHARS]
            raise

    def _run(self, job: ShadowInput) -> ShadowReport:
        rows = len(job.features)
        try:
            model = self._load()
            result = score_batch(job.features, model, self.hook)
        except Exception as exc:  # noqa: BLE001 - any shadow fault is reported, never raised
            return ShadowReport("failed", rows, detail=describe(exc)[:SHADOW_DETAIL_CHARS])
        if job.on_scored is not None:
            try:
                job.on_scored(model, result)
            except Exception as exc:  # noqa: BLE001 - capture is best effort
                logger.warning("shadow capture failed", extra={"error": describe(exc)})
        ok = [i not in result.errors for i in range(rows)]
        usable = [a and b for a, b in zip(ok, job.primary_ok, strict=True)]
        compared, agreement, mad = compare(job.primary, result.predictions, usable)
        report = ShadowReport(
            "ok",
            rows,
            scored=sum(ok),
            row_errors=len(result.errors),
            compared=compared,
            agreement=agreement,
            mean_abs_diff=mad,
            predict_seconds=result.predict_seconds,
            model=model.identity,
        )
        if self.sink is not None:
            entries = [
                shadow_entry(
                    i,
                    model=model.identity,
                    prediction=result.predictions[i],
                    error=result.errors.get(i),
                    primary_model=job.model_of(i),
                    primary_prediction=job.primary[i],
                    primary_ok=job.primary_ok[i],
                    rid=job.ids[i] if i < len(job.ids) else None,
                    key=job.keys[i] if i < len(job.keys) else None,
                    source=None if job.sources is None else job.sources[i],
                )
                for i in range(rows)
            ]
            put = self.sink.put(entries)
            report.unpublished = len(put.failed) + len(put.too_large)
        return report


def _log_late(future: Future[ShadowReport]) -> None:
    """Runs when the worker finishes; a run the primary stopped waiting for still leaves a trace."""
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None:
        logger.warning("shadow run crashed", extra={"error": describe(exc)})


def emit_shadow(report: ShadowReport, metrics: Any) -> None:
    """Add the shadow's metrics to the handler's metrics object and log the run."""
    for name, unit, value in report.metrics():
        metrics.add_metric(name=name, unit=unit, value=value)
    if report.status == "ok":
        logger.info("shadow scored", extra=report.log_extra())
    else:
        logger.warning(f"shadow {report.status}", extra=report.log_extra())
