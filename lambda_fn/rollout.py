"""Rollout on live traffic: weighted A/B variants and a shadow model, beside the primary scorer.

A/B (`MODEL_VARIANTS`): each record is routed by the sha256 of its id (not Python's salted `hash()`),
so an id always reaches the same variant across containers, restarts and replays while the weights
stay the same. Each variant is scored with one `score_batch` call on its share of the batch, and its
name goes into the output record (`model.variant`) and into the metrics (`variant` dimension).

Shadow (`SHADOW_MODEL_URI`): a second model scores the same inputs in a worker thread while the
primary writes its results. The primary waits for it at most `SHADOW_TIMEOUT_MS`; a slow, failing or
unloadable shadow is counted and logged, never raised, so it cannot fail, retry or hold up a primary
batch beyond that bound, and shadow predictions are never written as primary ones nor returned to API
callers. They go to metrics and logs, and to a separate stream (`SHADOW_OUTPUT_STREAM_NAME`) when one
is configured, as records without a top-level `prediction` field, so a consumer pointed at the wrong
stream fails loudly instead of reading shadow values as primary ones. Shadow output is best effort by
design: retrying a primary batch because of the shadow would duplicate primary output.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
import uuid
from bisect import bisect_right
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Literal

from aws_lambda_powertools import Logger

from lambda_fn.config import Metric, Settings, VariantSpec, metrics_namespace, service_name
from lambda_fn.model_store import LoadedModel
from lambda_fn.records import Reason
from lambda_fn.scoring import BatchResult, Hook, ModelBatchError, RowError, describe, score_batch
from lambda_fn.sinks import Entry, Sink, encode_json
from lambda_fn.wire import bounded_json, bounded_text, partition_key, utf8

logger = Logger(service=service_name(), child=True)
_SCALE = float(1 << 64)
# A shadow model that cannot be loaded is not retried on every batch: loading may cost seconds.
SHADOW_LOAD_BACKOFF_S = 60.0
_DETAIL_CHARS = 300

ModelFactory = Callable[[], LoadedModel]
VariantEmitter = Callable[[str, Sequence[tuple[str, str, float]]], None]


# --------------------------------------------------------------------------- A/B routing


def route_point(key: str) -> float:
    """A stable point in [0, 1) for a routing key: the first 8 bytes of its sha256 (any str, lone surrogates too)."""
    return int.from_bytes(hashlib.sha256(utf8(key)).digest()[:8], "big") / _SCALE


class Router:
    """Maps a key to a variant index in proportion to the weights, the same way in every process."""

    def __init__(self, weights: Sequence[float]) -> None:
        if not weights or any(not (w > 0 and math.isfinite(w)) for w in weights):
            raise ValueError("weights must be positive and finite")
        total = sum(weights)
        self.bounds = [c / total for c in accumulate(weights)][:-1]

    def pick(self, key: str) -> int:
        return bisect_right(self.bounds, route_point(key))

    def groups(self, keys: Sequence[str]) -> dict[int, list[int]]:
        """Positions of `keys` per variant index, each list in input order."""
        out: dict[int, list[int]] = {}
        for pos, key in enumerate(keys):
            out.setdefault(self.pick(key), []).append(pos)
        return out


@dataclass(slots=True)
class Arm:
    """A variant: its name, weight and how to get its (per-container cached) model."""

    name: str
    weight: float
    model: ModelFactory

    def identity_of(self, model: LoadedModel) -> dict[str, str]:
        """The identity outputs carry: the model's, and this variant's name."""
        return {**model.identity, "variant": self.name}


@dataclass(slots=True)
class ArmStats:
    name: str
    rows: int = 0
    scored: int = 0
    errors: int = 0
    predict_seconds: float = 0.0
    predict_calls: int = 0


@dataclass(slots=True)
class Routed:
    """A batch scored across variants, aligned with the input like `BatchResult`."""

    result: BatchResult
    arm_of: list[int]
    identities: list[dict[str, str]]
    stats: list[ArmStats]


class Variants:
    """Weighted variants; `score` makes one `score_batch` call per variant present in the batch."""

    def __init__(self, arms: Sequence[Arm]) -> None:
        self.arms = list(arms)
        self.router = Router([a.weight for a in self.arms])

    def pick(self, key: str) -> Arm:
        return self.arms[self.router.pick(key)]

    def score(
        self, features: Sequence[Any], keys: Sequence[str], hook: Hook | None = None, *, finite: bool = False
    ) -> Routed:
        n = len(features)
        merged = BatchResult([None] * n, {})
        arm_of = [0] * n
        stats = [ArmStats(a.name) for a in self.arms]
        identities = [{} for _ in self.arms]  # type: list[dict[str, str]]
        for index, positions in sorted(self.router.groups(keys).items()):
            arm = self.arms[index]
            model = arm.model()
            identities[index] = arm.identity_of(model)
            try:
                part = score_batch([features[p] for p in positions], model, hook, finite=finite)
            except ModelBatchError as exc:
                raise ModelBatchError(f"variant {arm.name!r}: {exc}") from exc
            for j, p in enumerate(positions):
                arm_of[p] = index
                err = part.errors.get(j)
                if err is None:
                    merged.predictions[p] = part.predictions[j]
                else:
                    merged.errors[p] = err
            s = stats[index]
            s.rows, s.errors = len(positions), len(part.errors)
            s.scored = s.rows - s.errors
            s.predict_seconds, s.predict_calls = part.predict_seconds, part.predict_calls
            merged.predict_seconds += part.predict_seconds
            merged.predict_calls += part.predict_calls
        merged.scored = n - len(merged.errors)
        return Routed(merged, arm_of, identities, stats)


def _ephemeral_metrics() -> Any:
    """Metrics flushed as their own EMF document, apart from the handler's (which carry no variant)."""
    from aws_lambda_powertools.metrics import EphemeralMetrics

    return EphemeralMetrics(namespace=metrics_namespace(), service=service_name())


def emf_variant_emitter(variant: str, values: Sequence[tuple[str, str, float]]) -> None:
    """Emit metrics with a `variant` dimension as their own EMF document (the handler's carry none)."""
    emf = _ephemeral_metrics()
    emf.add_dimension(name=Metric.VARIANT_DIMENSION, value=variant)
    for name, unit, value in values:
        emf.add_metric(name=name, unit=unit, value=value)
    emf.flush_metrics()


def emit_variant_stats(stats: Sequence[ArmStats], emit: VariantEmitter) -> None:
    """Per-variant RecordsScored / PredictLatencyMs; a variant with no rows in the batch emits nothing."""
    for s in stats:
        if s.rows:
            emit(
                s.name,
                [
                    (Metric.RECORDS_IN, "Count", s.rows),
                    (Metric.RECORDS_SCORED, "Count", s.scored),
                    (Metric.PREDICT_LATENCY, "Milliseconds", s.predict_seconds * 1000),
                ],
            )


# --------------------------------------------------------------------------- shadow

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


class ShadowRun:
    """A started shadow run; `wait()` returns within the deadline whatever the shadow does."""

    def __init__(self, future: Future[ShadowReport] | None, deadline: float, rows: int, report: ShadowReport | None):
        self._future, self._deadline, self._rows, self._report = future, deadline, rows, report

    def wait(self) -> ShadowReport:
        if self._report is not None:
            return self._report
        assert self._future is not None
        try:
            return self._future.result(timeout=max(0.0, self._deadline - time.monotonic()))
        except TimeoutError:
            return ShadowReport("timeout", self._rows, detail="the shadow did not finish within SHADOW_TIMEOUT_MS")
        except Exception as exc:  # noqa: BLE001 - the shadow must never fail the primary
            return ShadowReport("failed", self._rows, detail=describe(exc)[:_DETAIL_CHARS])


class Shadow:
    """Scores a copy of the primary's inputs with another model on one worker thread, under a deadline.

    One worker and no queue: while a run is still going (a slow shadow past its deadline) the next
    batch is not shadowed and is counted as skipped, so a slow shadow cannot pile up work or memory.
    """

    def __init__(
        self,
        model: ModelFactory,
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
            self._load_error = describe(exc)[:_DETAIL_CHARS]
            raise

    def _run(self, job: ShadowInput) -> ShadowReport:
        rows = len(job.features)
        try:
            model = self._load()
            result = score_batch(job.features, model, self.hook)
        except Exception as exc:  # noqa: BLE001 - any shadow fault is reported, never raised
            return ShadowReport("failed", rows, detail=describe(exc)[:_DETAIL_CHARS])
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
            entries = [_shadow_entry(i, job, model.identity, result) for i in range(rows)]
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


def _strict(prediction: Any) -> tuple[Any, str | None]:
    """A prediction as strict JSON can carry it, or None and why not (NaN, a value no encoder takes)."""
    try:
        encode_json(prediction)
    except ValueError as exc:
        if "not JSON compliant" in str(exc):
            return None, Reason.NON_FINITE_PREDICTION
        return None, Reason.MODEL_ERROR
    except (TypeError, RecursionError):
        return None, Reason.MODEL_ERROR
    return prediction, None


def _shadow_entry(i: int, job: ShadowInput, model: dict[str, str], result: BatchResult) -> Entry:
    """One shadow record; every field strict JSON and bounded, like the primary's (lambda_fn.wire)."""
    err: RowError | None = result.errors.get(i)
    shadow: dict[str, Any] = {"model": {k: bounded_text(str(v), 512) for k, v in model.items()}}
    if err is None:
        value, why = _strict(result.predictions[i])
        err = None if why is None else RowError(why, "the shadow's prediction cannot be written as strict JSON")
        if err is None:
            shadow["prediction"] = value
    if err is not None:
        shadow["error"] = {"reason": err.reason, "detail": bounded_text(err.detail, _DETAIL_CHARS)}
    primary_model = job.primary_model if isinstance(job.primary_model, dict) else job.primary_model[i]
    primary: dict[str, Any] = {"model": primary_model}
    value, why = _strict(job.primary[i]) if job.primary_ok[i] else (None, "not scored")
    if why is None:
        primary["prediction"] = value
    else:
        primary["error"] = "the primary did not score this record"
    rid = job.ids[i] if i < len(job.ids) else None
    rid_json, rid_digest = bounded_json(rid)
    body: dict[str, Any] = {"kind": "shadow", "id": json.loads(rid_json), "shadow": shadow, "primary": primary}
    if rid_digest is not None:
        body["id_sha256"] = rid_digest
    if job.sources is not None:
        source = dict(job.sources[i])
        source["partition_key"] = bounded_text(str(source.get("partition_key", "")))
        body["source"] = source
    key = job.keys[i] if i < len(job.keys) and job.keys[i] else hashlib.sha256(utf8(rid_json)).hexdigest()
    return Entry(ref=i, data=encode_json(body).encode(), key=partition_key(key))


def emit_shadow(report: ShadowReport, metrics: Any) -> None:
    """Add the shadow's metrics to the handler's metrics object and log the run."""
    for name, unit, value in report.metrics():
        metrics.add_metric(name=name, unit=unit, value=value)
    if report.status == "ok":
        logger.info("shadow scored", extra=report.log_extra())
    else:
        logger.warning(f"shadow {report.status}", extra=report.log_extra())


# --------------------------------------------------------------------------- synchronous requests


def choose(ro: Rollout, key: str | None, primary: ModelFactory) -> tuple[LoadedModel, dict[str, str]]:
    """The model for one API request and the identity to answer with (a variant's, when variants are set).

    A request is routed as a whole by `key` (its first id); without one, by a random key, so it still
    follows the weights but is not sticky."""
    if ro.variants is None:
        model = primary()
        return model, model.identity
    arm = ro.variants.pick(key or uuid.uuid4().hex)
    model = arm.model()
    return model, arm.identity_of(model)


def after_request(
    ro: Rollout,
    features: Sequence[Any],
    predictions: Sequence[Any],
    identity: dict[str, str],
    ids: Sequence[Any] = (),
    emit: VariantEmitter = emf_variant_emitter,
) -> ShadowReport | None:
    """Per-variant metrics and the shadow for an answered request; bounded by SHADOW_TIMEOUT_MS, never raises.

    The caller has its response already: nothing here can change it."""
    if "variant" in identity:
        n = float(len(predictions))
        emit(identity["variant"], [(Metric.RECORDS_IN, "Count", n), (Metric.RECORDS_SCORED, "Count", n)])
    if ro.shadow is None:
        return None
    job = ShadowInput(list(features), list(predictions), [True] * len(predictions), identity, ids=list(ids))
    report = ro.shadow.start(job).wait()
    emf = _ephemeral_metrics()
    emit_shadow(report, emf)
    emf.flush_metrics()
    return report


# --------------------------------------------------------------------------- wiring


@dataclass(slots=True)
class Rollout:
    """The rollout pieces configured for this container (each may be absent)."""

    variants: Variants | None = None
    shadow: Shadow | None = None


def settings_for(settings: Settings, uri: str, sha256: str | None) -> Settings:
    """The primary's settings pointed at another artifact; name and version come from that artifact."""
    if uri == settings.model_uri and sha256 == settings.model_sha256:
        return settings
    return settings.model_copy(
        update={"model_uri": uri, "model_sha256": sha256, "model_name": None, "model_version": None}
    )


def rollout_from(
    settings: Settings,
    load: Callable[[Settings], LoadedModel],
    shadow_sink: Sink | None = None,
    hook: Hook | None = None,
) -> Rollout:
    """Build variants and shadow from settings; models load lazily through `load` (cached per container)."""
    variants = None
    if settings.model_variants:
        arms = []
        for spec in settings.model_variants:
            s = _variant_settings(settings, spec)
            arms.append(Arm(spec.name, spec.weight, lambda s=s: load(s)))  # type: ignore[misc]
        variants = Variants(arms)
    shadow = None
    if settings.shadow_model_uri:
        s = settings_for(settings, settings.shadow_model_uri, settings.shadow_model_sha256)
        shadow = Shadow(lambda: load(s), settings.shadow_timeout_ms / 1000, shadow_sink, hook)
    return Rollout(variants, shadow)


def _variant_settings(settings: Settings, spec: VariantSpec) -> Settings:
    if spec.uri is None:
        return settings
    return settings_for(settings, spec.uri, spec.sha256)
