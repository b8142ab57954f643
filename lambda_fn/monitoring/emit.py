"""Capture and profiles on the hot path: one call per scored batch or request, best effort, bounded in time.

The stream scorer and the API hand over what they scored (`Scored`: per A/B arm, or the shadow, the validated
model input after the hook, the predictions, the record ids and sampling keys, the source positions) once their
predictions are computed. `Emitter.submit` never raises and never blocks: the work runs on a small worker pool.
Per part it adds every scored row to a `Profile` of its variant (the release's reference's bins), picks the
captured rows by the keyed hash of their id (`sampling.Sampler.pick`: the same ids for primary, shadow and the
labels job), builds their `CaptureRecord`s, and writes gzip JSON-lines objects (`capture.encode_objects`) and one
profile object per variant (`s3_store.put_profile`). `Pending.wait` waits for that at most until the batch's
deadline (CAPTURE_TIMEOUT_MS after submit) and reports what happened; a capture that is still running goes on in
the background and is counted, never raised. While `workers` jobs are still running (S3 hanging), a new batch is
not captured and its sampled records are counted as dropped, so a slow S3 cannot pile up work or memory.

Objects are filed under the deployment's model (`model=` / `sha256=`: MODEL_NAME / MODEL_SHA256, the monitor's
MONITOR_MODEL_NAME / MONITOR_MODEL_SHA256) with the variant (`primary`, an A/B arm's name, or `shadow`) as the
partition; each record and profile body carries the identity of the model that scored it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from typing import Any, Protocol, runtime_checkable

import numpy as np
from aws_lambda_powertools import Logger

from lambda_fn.config import Metric, service_name
from lambda_fn.deadline import bounded_result
from lambda_fn.monitoring.capture import EncodedLines, ModelIdentity, encode_objects, record_lines
from lambda_fn.monitoring.columns import Columns
from lambda_fn.monitoring.profile import Profile
from lambda_fn.monitoring.reference import Reference
from lambda_fn.monitoring.s3_store import CAPTURE, Location, put_profile
from lambda_fn.monitoring.sampling import Sampler
from lambda_fn.scoring import BatchResult, describe

logger = Logger(service=service_name(), child=True)
SHADOW = "shadow"
PRIMARY = "primary"
_DETAIL_CHARS = 300


@dataclass(frozen=True)
class CaptureConfig:
    """The CAPTURE_* settings as the emitter uses them (`lambda_fn.runtime` builds it once per container)."""

    bucket: str
    prefix: str
    sampler: Sampler
    timeout_s: float
    raw: bool = False  # CAPTURE_PAYLOAD=raw: the raw payload fields too
    reference: Reference | None = None  # None: capture only, no profiles


@runtime_checkable
class SourceColumns(Protocol):
    """Sources readable by field (a stream batch's positions): capture reads its sampled rows' without a mapping
    per record, and writes each as the object of these fields, in their order."""

    def columns(self, rows: Sequence[int]) -> dict[str, list[Any]]:
        """Each field's values at `rows` (positions into the part's rows)."""
        ...


@dataclass(frozen=True)
class Scored:
    """One part of a batch or request scored by one model: aligned with `result` (its input rows).

    `keys[i]` is row i's sampling key (`capture_key`: the record id, else its stream position or the request id
    and row); `sources[i]` where it came from (or `sources.columns(rows)`, `SourceColumns`); `raw[i]` its payload's
    feature object (both may be lazy views: only the captured rows are read).
    """

    variant: str
    model: Mapping[str, str]
    result: BatchResult
    keys: Sequence[str]
    sources: Sequence[Mapping[str, Any]] | SourceColumns | None = None
    raw: Sequence[Any] | None = None


@dataclass
class CaptureReport:
    """What one batch's capture did; `metrics()` turns it into the handler's metrics."""

    status: str = "ok"  # ok | off | busy | timeout | failed
    captured: int = 0
    dropped: int = 0
    errors: int = 0
    profiles: int = 0
    problems: list[str] = field(default_factory=list)

    def fault(self, what: str, exc: BaseException | None = None) -> None:
        self.errors += 1
        if len(self.problems) < 5:
            self.problems.append((f"{what}: {describe(exc)}" if exc is not None else what)[:_DETAIL_CHARS])

    def merge(self, other: CaptureReport) -> None:
        self.captured += other.captured
        self.dropped += other.dropped
        self.errors += other.errors
        self.profiles += other.profiles
        self.problems.extend(other.problems[: max(0, 5 - len(self.problems))])

    def metrics(self) -> list[tuple[str, str, float]]:
        return [
            (Metric.CAPTURED_RECORDS, "Count", self.captured),
            (Metric.CAPTURE_DROPPED, "Count", self.dropped),
            (Metric.CAPTURE_ERRORS, "Count", self.errors),
            (Metric.PROFILES_WRITTEN, "Count", self.profiles),
        ]


class _Late:
    """Counts of captures that finished after nobody waited for them (a timed-out batch, the shadow's)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.report = CaptureReport()

    def add(self, report: CaptureReport) -> None:
        with self.lock:
            self.report.merge(report)

    def drain(self) -> CaptureReport:
        with self.lock:
            out, self.report = self.report, CaptureReport()
        return out


class Pending:
    """A submitted capture; `wait()` returns by the deadline whatever S3 does.

    A capture still running at the deadline goes on; its counts are added to the next batch's report."""

    def __init__(
        self, future: Future[CaptureReport] | None, deadline: float, report: CaptureReport | None, late: _Late
    ) -> None:
        self._future, self._deadline, self._report, self._late = future, deadline, report, late
        self._lock = threading.Lock()
        self._abandoned = False
        if future is not None:
            future.add_done_callback(self._done)

    def _done(self, future: Future[CaptureReport]) -> None:
        with self._lock:
            if not self._abandoned:
                return
        self._late.add(_result(future))

    def abandon(self) -> None:
        """Nobody waits for it: its counts go to a later batch's report when it ends."""
        if self._report is not None:
            self._late.add(self._report)
            return
        with self._lock:
            self._abandoned = True
            done = self._future is not None and self._future.done()
        if done and self._future is not None:
            self._late.add(_result(self._future))

    def wait(self) -> CaptureReport:
        report = self._wait()
        report.merge(self._late.drain())
        return report

    def _wait(self) -> CaptureReport:
        if self._report is not None:
            return self._report
        assert self._future is not None
        try:
            return bounded_result(self._future, self._deadline)
        except TimeoutError:
            with self._lock:
                finished = self._future.done()
                self._abandoned = not finished
            if finished:
                return _result(self._future)
            report = CaptureReport("timeout")
            report.fault("capture did not finish within CAPTURE_TIMEOUT_MS (it goes on in the background)")
            return report


def _result(future: Future[CaptureReport]) -> CaptureReport:
    try:
        return future.result(timeout=0)
    except Exception as exc:  # noqa: BLE001 - capture never fails the primary
        report = CaptureReport("failed")
        report.fault("capture", exc)
        return report


def _identity(d: Mapping[str, str]) -> ModelIdentity:
    return ModelIdentity(str(d.get("name", "")), str(d.get("version", "")), str(d.get("sha256", "")))


def _model_dict(d: Mapping[str, str]) -> dict[str, str]:
    return {k: str(d.get(k, "")) for k in ("name", "version", "sha256")}


def _scored_rows(result: BatchResult) -> tuple[Any, list[int]]:
    """(the frame's rows that were scored, their input positions): the whole frame when nothing failed."""
    kept = result.kept or []
    frame = result.frame
    if not result.errors:
        return frame, kept
    mask = np.fromiter((i not in result.errors for i in kept), dtype=bool, count=len(kept))
    return frame.iloc[mask], [i for i, ok in zip(kept, mask, strict=True) if ok]


class Emitter:
    """Capture and profiles for one function; `submit` per batch or request (see the module's note)."""

    def __init__(
        self,
        config: CaptureConfig,
        s3: Callable[[], Any],
        *,
        workers: int = 2,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config, self._s3 = config, s3
        self.now = now  # the capture's clock: a replay in stream time (servingkit demo --drift) sets its own
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="capture")
        self._slots = threading.BoundedSemaphore(workers)
        self._late = _Late()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def submit(self, parts: Sequence[Scored], deployment: Mapping[str, str]) -> Pending:
        """Start capturing `parts` (one batch or request), filed under `deployment`. Never raises or blocks."""
        deadline = time.monotonic() + self.config.timeout_s
        try:
            if not any(p.result.kept for p in parts):
                return Pending(None, deadline, CaptureReport(), self._late)
            if not self._slots.acquire(blocking=False):
                report = CaptureReport("busy", dropped=self._sampled(parts))
                report.fault("the previous capture is still running (S3 slower than CAPTURE_TIMEOUT_MS): skipped")
                return Pending(None, deadline, report, self._late)
            at = self.now()
            try:
                future = self._pool.submit(self._run, list(parts), dict(deployment), at)
            except RuntimeError:
                self._slots.release()
                raise
            future.add_done_callback(lambda _f: self._slots.release())
            return Pending(future, deadline, None, self._late)
        except Exception as exc:  # noqa: BLE001 - capture never fails the primary
            report = CaptureReport("failed")
            report.fault("capture", exc)
            return Pending(None, deadline, report, self._late)

    def background(self, parts: Sequence[Scored], deployment: Mapping[str, str]) -> None:
        """`submit` without waiting (the shadow's parts): its counts reach a later batch's report."""
        self.submit(parts, deployment).abandon()

    def _sampled(self, parts: Sequence[Scored]) -> int:
        return sum(len(self.config.sampler.pick(_scored_keys(p))) for p in parts)

    def _run(self, parts: list[Scored], deployment: dict[str, str], at: datetime) -> CaptureReport:
        report = CaptureReport()
        cfg = self.config
        location = Location(cfg.bucket, cfg.prefix, deployment.get("name", ""), deployment.get("sha256", ""))
        profiles: dict[str, tuple[Profile, Mapping[str, str]]] = {}
        records: list[EncodedLines] = []
        strings = cfg.reference.string_features if cfg.reference is not None else frozenset()
        for part in parts:
            try:
                frame, positions = _scored_rows(part.result)
                if not positions:
                    continue
                columns = Columns(frame, strings)  # read once, for the profile and the capture both
                if cfg.reference is not None:
                    _profile_into(profiles, cfg.reference, part, columns, positions)
                lines = self._records(part, columns, positions, at)
                if lines is not None:
                    records.append(lines)
            except Exception as exc:  # noqa: BLE001 - one part's fault does not stop the others
                report.fault(f"capture of variant {part.variant!r}", exc)
        self._write_records(records, _identity(deployment), report)
        for variant, (profile, model) in profiles.items():
            try:
                put_profile(self._s3(), location, profile, model=_model_dict(model), at=at)
                report.profiles += 1
            except Exception as exc:  # noqa: BLE001 - S3 errors, throttling: counted
                report.fault(f"profile of variant {variant!r}", exc)
        report.status = "ok" if not report.errors else "failed"
        return report

    def _records(self, part: Scored, columns: Columns, positions: list[int], at: datetime) -> EncodedLines | None:
        """The sampled rows' capture lines (None when none is sampled): only those rows are read or written."""
        keys = part.keys if len(positions) == len(part.keys) else [part.keys[i] for i in positions]
        picked = self.config.sampler.pick(keys).tolist()
        if not picked:
            return None
        rows = [positions[j] for j in picked]
        preds = part.result.predictions
        picked_keys = [keys[j] for j in picked]
        sources, event_ids = _sources_of(part.sources, rows, picked_keys)
        raws = [_raw(part.raw[i]) for i in rows] if self.config.raw and part.raw is not None else None
        sampler = self.config.sampler
        return record_lines(
            columns.take(picked),  # only the sampled rows leave the frame's (Arrow) columns
            [preds[i] for i in rows],
            picked_keys if sampler.id_key is None else [sampler.written_id(k) for k in picked_keys],
            event_ids,
            sources,
            raws,
            _identity(part.model),
            part.variant,
            at,
        )

    def _write_records(self, records: list[EncodedLines], deployment: ModelIdentity, report: CaptureReport) -> None:
        if not records:
            return
        encoded = encode_objects(records, f"{self.config.prefix.rstrip('/')}/{CAPTURE}", key_model=deployment)
        report.dropped += encoded.dropped
        for key, body in encoded.objects:
            rows = encoded.rows if len(encoded.objects) == 1 else body_rows(body)
            try:
                self._s3().put_object(Bucket=self.config.bucket, Key=key, Body=body,
                                      ContentType="application/x-ndjson", ContentEncoding="gzip")  # fmt: skip
                report.captured += rows
            except Exception as exc:  # noqa: BLE001 - S3 errors, throttling: counted
                report.dropped += rows
                report.fault("capture object", exc)


def body_rows(body: bytes) -> int:
    """Lines in one gzip JSON-lines capture body."""
    import gzip

    return gzip.decompress(body).count(b"\n")


def _scored_keys(part: Scored) -> Sequence[str]:
    _, positions = _scored_rows(part.result)
    return part.keys if len(positions) == len(part.keys) else [part.keys[i] for i in positions]


def _profile_into(
    profiles: dict[str, tuple[Profile, Mapping[str, str]]],
    reference: Reference,
    part: Scored,
    columns: Columns,
    positions: list[int],
) -> None:
    preds = part.result.predictions
    values = preds if len(positions) == len(preds) else [preds[i] for i in positions]
    if part.variant not in profiles:
        profiles[part.variant] = (Profile.new(reference, part.variant), part.model)
    profiles[part.variant][0].add_columns(columns, values)


def _sources_of(
    sources: Sequence[Mapping[str, Any]] | SourceColumns | None, rows: list[int], keys: list[str]
) -> tuple[Sequence[Mapping[str, Any] | None] | dict[str, list[Any]], list[str]]:
    """The sampled rows' sources (by field when the part gives them so) and their event ids."""
    if isinstance(sources, SourceColumns):
        by_field = sources.columns(rows)
        seqs, subs = by_field.get("sequence_number"), by_field.get("sub_sequence_number", [])
        if seqs is not None and subs.count(None) == len(subs):  # stream positions without KPL: one C-level pass
            return by_field, list(map("{}:{}".format, by_field.get("shard_id") or repeat(None), seqs))
        names = list(by_field)
        per_row = [dict(zip(names, values, strict=True)) for values in zip(*by_field.values(), strict=True)]
        return by_field, [_event_id(src, k) for src, k in zip(per_row, keys, strict=True)]
    picked = [sources[i] for i in rows] if sources is not None else [None] * len(rows)
    return picked, [_event_id(src, k) for src, k in zip(picked, keys, strict=True)]


def _event_id(source: Mapping[str, Any] | None, key: str) -> str:
    if source is None:
        return key
    if "sequence_number" in source:
        sub = source.get("sub_sequence_number")
        return f"{source.get('shard_id')}:{source['sequence_number']}" + ("" if sub is None else f":{sub}")
    if "request_id" in source:
        return f"{source['request_id']}:{source.get('row', 0)}"
    return key


def capture_key(record_id: Any, fallback: str) -> str:
    """A row's sampling key: its id as text (a string as is, another value as compact JSON), else `fallback`."""
    if type(record_id) is str and record_id:
        return record_id
    if record_id is None or record_id == "":
        return fallback
    try:
        return json.dumps(record_id, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return str(record_id)


def _raw(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {"value": value}


def emit_report(report: CaptureReport, metrics: Any) -> None:
    """Add the capture's metrics to a metrics object (the handler's, or an EMF document of its own)."""
    for name, unit, value in report.metrics():
        metrics.add_metric(name=name, unit=unit, value=value)


# --------------------------------------------------------------------------- adapters of the handlers


def request_part(
    result: BatchResult, identity: Mapping[str, str], ids: Sequence[Any], request_id: str, raw: Sequence[Any] | None,
    variant: str | None = None,
) -> Scored:  # fmt: skip
    """One API request's rows as a part: keyed by their ids, else `<request id>:<row>`."""
    n = len(result.predictions)
    keys = [capture_key(ids[i] if i < len(ids) else None, f"{request_id}:{i}") for i in range(n)]
    sources = [{"request_id": request_id, "row": i} for i in range(n)]
    name = variant or identity.get("variant", PRIMARY)
    return Scored(name, identity, result, keys, sources, raw)


def start(
    emitter: Emitter,
    result: BatchResult,
    identity: Mapping[str, str],
    ids: Sequence[Any],
    request_id: str,
    raw: Sequence[Any],
    deployment: Mapping[str, str] | None = None,
) -> Pending | None:
    """Submit one answered request's capture (never raises)."""
    try:
        part = request_part(result, identity, ids, request_id, raw if emitter.config.raw else None)
        return emitter.submit([part], deployment or identity)
    except Exception:  # capture is best effort
        logger.exception("capture could not start")
        return None


def shadow_capture(
    emitter: Emitter,
    deployment: Mapping[str, str],
    ids: Sequence[Any],
    request_id: str,
    raw: Sequence[Any],
) -> Callable[[Any, BatchResult], None]:
    """What the shadow calls with its model and result for one request: captured as variant `shadow`, not waited."""

    def on_scored(model: Any, result: BatchResult) -> None:
        part = request_part(result, model.identity, ids, request_id, raw if emitter.config.raw else None, SHADOW)
        emitter.background([part], deployment)

    return on_scored


def finish(pending: Pending | None, metrics: Any = None) -> CaptureReport | None:
    """Wait for a capture within its bound, add its metrics (to `metrics`, else an EMF document of its own), log
    its faults. Never raises."""
    if pending is None:
        return None
    try:
        report = pending.wait()
        if metrics is not None:
            emit_report(report, metrics)
        else:
            from lambda_fn.variants import ephemeral_metrics

            emf = ephemeral_metrics()
            emit_report(report, emf)
            emf.flush_metrics()
        if report.errors:
            logger.warning("capture fault", extra={"capture": {"status": report.status, "problems": report.problems}})
        return report
    except Exception:  # capture is best effort
        logger.exception("capture report failed")
        return None
