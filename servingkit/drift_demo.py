"""`servingkit demo --drift`: prediction monitoring end to end on the local cloud, in stream time.

The local cloud (the embedded moto server, LocalStack or an endpoint) gets the stack's resources and the model; the
real stream handler scores rides with capture and profiles on (CAPTURE_*, the release's reference from the emulator's
S3) and writes its predictions to the emulator's output stream. Rides are replayed in **stream time**: minute k of
the stream is `start + k` and the capture's clock (`Emitter.now`) says so, so 16 minutes of traffic at 10 records a
second take seconds, and the monitor sees what it would see live. Part-way (the onset) the rides drift: longer trips
(`trip_distance`) and pickups in zones the model never saw (`PU_DO`); the hour and weekday do not change. The true
durations arrive late as S3 label files (`s3_labels.put_labels`, the existing layout). The monitor's window job
(`lambda_fn.monitoring.job.run`, the scheduled function's code) runs at every schedule tick with its short window and
publishes its metrics to the emulator's CloudWatch; the drift alarm is then evaluated in-process on those datapoints
(`alarm.first_alarm`: moto stores alarms but never evaluates them), which gives the detection delay from the onset
to the alarm. The last tick also joins the late labels (model quality); its JSON summary and HTML report are in S3
and copied to `out_dir`.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from infra.topology import Ctx
from servingkit.localcloud.resources import DEFAULT_MODEL_DIR, DEFAULT_RELEASE
from servingkit.monitor_alarm import AlarmRule, first_alarm

PREFIX = "monitoring"
INJECTED = ("trip_distance", "PU_DO")  # the features the drift changes; pickup_hour and pickup_dow stay as trained
NEW_ZONES = (266, 300)  # zone ids the city (and so the training data) does not have
_DRIFT_DISTANCE = 2.5  # trips after the onset are this much longer ...
_NEW_ZONE_SHARE = 0.3  # ... and this share of them start in a new zone


@dataclass(frozen=True)
class DriftOptions:
    """A drift demo run; `records` at `rate` records a second of stream time, drift from `onset` (share of it)."""

    records: int = 10_000
    rate: float = 10.0
    onset: float = 0.5
    batch: int = 100
    schedule_minutes: int = 1
    short_window_minutes: int = 2
    label_delay_minutes: int = 2
    sample_rate: float = 0.2
    seed: int = 42
    endpoint_url: str | None = None
    target: str = "embedded"
    context: dict[str, str] = field(default_factory=dict)
    model_dir: Path = DEFAULT_MODEL_DIR
    release: Path = DEFAULT_RELEASE
    out_dir: Path = Path("build/drift-demo")

    @property
    def per_minute(self) -> int:
        return max(1, round(self.rate * 60))

    @property
    def minutes(self) -> int:
        return max(2, math.ceil(self.records / self.per_minute))

    @property
    def onset_minute(self) -> int:
        return max(1, min(self.minutes - 1, round(self.minutes * self.onset)))


@dataclass
class DriftResult:
    """What the run found: the final window's drift rows, quality, where the report is, and the alarm's delay."""

    start: datetime
    onset: datetime
    end: datetime
    records: int
    predicted: int
    drift: list[dict[str, Any]]
    quality: dict[str, Any]
    report_uris: dict[str, str]
    local: dict[str, str]
    alarm_at: datetime | None
    rule: AlarmRule
    ticks: list[dict[str, Any]]  # the scheduled runs during the replay: end, status, drifted features
    backfill: list[dict[str, Any]] = field(default_factory=list)  # the same windows re-run over the stored history

    @property
    def drifted(self) -> list[str]:
        return [d["feature"] for d in self.drift if d["drifted"]]

    @property
    def delay_seconds(self) -> float | None:
        return None if self.alarm_at is None else (self.alarm_at - self.onset).total_seconds()

    def figures(self) -> dict[str, Any]:
        return {
            "records": self.records, "predicted": self.predicted, "start": self.start.isoformat(),
            "onset": self.onset.isoformat(), "end": self.end.isoformat(), "drifted": self.drifted,
            "injected": list(INJECTED), "alarm_at": self.alarm_at.isoformat() if self.alarm_at else None,
            "detection_delay_seconds": self.delay_seconds, "alarm": self.rule.describe(),
            "quality": self.quality.get("variants", {}), "report": self.report_uris, "local": self.local,
            "ticks": len(self.ticks), "backfill_windows": len(self.backfill),
            "backfill_agrees": [t["drifted"] for t in self.ticks[:-1]] == [b["drifted"] for b in self.backfill],
        }  # fmt: skip


# --------------------------------------------------------------------------- traffic


def drifted_rides(n: int, seed: int, onset_row: int) -> dict[str, np.ndarray]:
    """`taxi.rides` with drift from row `onset_row` on: longer trips, a share of pickups in unseen zones; the true
    duration grows with the distance (the label the model will be judged by)."""
    from servingkit.taxi import rides

    cols = rides(n, seed)
    rng = np.random.default_rng(seed + 1)
    after = np.arange(n) >= onset_row
    cols["trip_distance"] = np.where(after, np.round(cols["trip_distance"] * _DRIFT_DISTANCE, 2), cols["trip_distance"])
    cols["duration"] = np.where(after, np.round(2 + (cols["duration"] - 2) * _DRIFT_DISTANCE, 2), cols["duration"])
    new_zone = after & (rng.random(n) < _NEW_ZONE_SHARE)
    cols["PULocationID"] = np.where(new_zone, rng.integers(*NEW_ZONES, size=n), cols["PULocationID"])
    return cols


def ride_event(cols: Mapping[str, np.ndarray], i: int) -> dict[str, Any]:
    return {
        "ride_id": f"ride-{i:07d}",
        "ride": {
            "PULocationID": int(cols["PULocationID"][i]),
            "DOLocationID": int(cols["DOLocationID"][i]),
            "trip_distance": float(cols["trip_distance"][i]),
            "pickup_datetime": str(cols["pickup_datetime"][i]),
        },
    }


def label_lines(cols: Mapping[str, np.ndarray], rows: range, arrival: datetime) -> bytes:
    """The late truth of `rows` in the kit's label lines (`{"id", "label", "time"}`)."""
    at = arrival.isoformat().replace("+00:00", "Z")
    lines = (json.dumps({"id": f"ride-{i:07d}", "label": float(cols["duration"][i]), "time": at}) for i in rows)
    return ("\n".join(lines) + "\n").encode()


# --------------------------------------------------------------------------- the monitor's settings


def capture_environment(bucket: str, reference_uri: str, reference_sha256: str, opts: DriftOptions) -> dict[str, str]:
    """The scorer's CAPTURE_* (the stack's `-c monitoring=true` sets the same)."""
    return {
        "CAPTURE_BUCKET": bucket, "CAPTURE_PREFIX": PREFIX, "CAPTURE_SAMPLE_RATE": str(opts.sample_rate),
        "CAPTURE_TIMEOUT_MS": "10000",  # the replay waits for every capture: its figures do not depend on load
        "MONITOR_REFERENCE_URI": reference_uri, "MONITOR_REFERENCE_SHA256": reference_sha256,
    }  # fmt: skip


def monitor_environment(
    bucket: str, release: Mapping[str, Any], reference_uri: str, opts: DriftOptions, *, labels: bool
) -> dict[str, str]:
    """The monitor function's MONITOR_* for this run (short window = `short_window_minutes`)."""
    metrics = {k: v for k, v in (release.get("metrics") or {}).items() if k in ("mae", "rmse")}
    return {
        "MONITOR_BUCKET": bucket, "MONITOR_PREFIX": PREFIX, "MONITOR_MODEL_NAME": str(release["name"]),
        "MONITOR_MODEL_SHA256": str(release["sha256"]), "MONITOR_MODEL_VERSION": str(release.get("version", "")),
        "MONITOR_REFERENCE_URI": reference_uri, "MONITOR_REFERENCE_SHA256": str(release["reference"]["sha256"]),
        "MONITOR_SHORT_WINDOW_MINUTES": str(opts.short_window_minutes), "MONITOR_LONG_WINDOW_HOURS": "1",
        "MONITOR_LABELS": "true" if labels else "false",
        "MONITOR_LABEL_DELAY_MINUTES": str(opts.label_delay_minutes + 1),
        "MONITOR_LABEL_SPAN_MINUTES": str(opts.minutes),
        **({"MONITOR_TRAINING_METRICS": json.dumps(metrics)} if metrics else {}),
    }  # fmt: skip


# --------------------------------------------------------------------------- the table


def drift_rows(summary: Mapping[str, Any], variant: str = "primary") -> list[dict[str, Any]]:
    """Per feature (and the prediction) of the short window: the method nearest its alert threshold, its score."""
    window = summary["windows"]["short"]
    thresholds = window["thresholds"]["drift"]
    rows = []
    for d in window["variants"].get(variant, {}).get("drift", []):
        scored = [(d[m] / thresholds[m][1], m) for m in ("psi", "js", "ks", "wasserstein") if d.get(m) is not None]
        _, method = max(scored) if scored else (0.0, "psi")
        rows.append({
            "feature": d["feature"], "method": method, "score": d.get(method), "threshold": thresholds[method][1],
            "severity": d["severity"], "drifted": d["severity"] == "alert",
        })  # fmt: skip
    return rows


def render(result: DriftResult) -> str:
    """The per-feature table, the quality figures, the alarm and where the report is."""
    out = [f"drift table (short window ending {result.end:%H:%M}Z, stream time; drift injected into "
           f"{', '.join(INJECTED)} at {result.onset:%H:%M}Z):"]  # fmt: skip
    out.append(f"  {'feature':<14} {'method':<12} {'score':>8} {'threshold':>9}  drifted")
    for r in result.drift:
        score = "n/a" if r["score"] is None else f"{r['score']:.3f}"
        out.append(f"  {r['feature']:<14} {r['method']:<12} {score:>8} {r['threshold']:>9.2f}  "
                   f"{'YES' if r['drifted'] else 'no'} ({r['severity']})")  # fmt: skip
    out.append("model quality from late labels:")
    for variant, m in (result.quality.get("variants") or {}).items():
        ratio = (m.get("degradation") or {}).get("worst")
        out.append(f"  {variant}: n {m.get('n')}, MAE {m.get('mae', float('nan')):.2f}, "
                   f"RMSE {m.get('rmse', float('nan')):.2f} min"
                   + (f", {ratio:.2f}x the training error" if ratio is not None else ""))  # fmt: skip
    counts = result.quality.get("counts") or {}
    out.append("  labels: " + ", ".join(f"{k} {counts[k]}" for k in ("joined", "late", "missing", "pending")
                                       if k in counts))  # fmt: skip
    out.append(f"alarm ({result.rule.describe()}): " + (
        f"ALARM at {result.alarm_at:%H:%M}Z, {result.delay_seconds / 60:.1f} min of stream time after the onset"
        if result.alarm_at is not None and result.delay_seconds is not None else "never"))  # fmt: skip
    out += [f"report: {uri}" for name, uri in result.report_uris.items() if name != "report-long.html"]
    out += [f"local copy: {path}" for path in result.local.values()]
    return "\n".join(out)


# --------------------------------------------------------------------------- the run


class StreamClock:
    """The capture's clock during the replay: the stream time of the batch being scored."""

    def __init__(self, start: datetime) -> None:
        self.t = start

    def __call__(self) -> datetime:
        return self.t


def _stream_start(opts: DriftOptions) -> datetime:
    """The replay ends a few minutes before now (minute-aligned), so every label it sends has arrived."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(minutes=opts.minutes + opts.label_delay_minutes + 2)


@contextmanager
def local_cloud(opts: DriftOptions, log: Callable[[str], None]) -> Iterator[tuple[Any, dict[str, Any], str]]:
    """The local cloud with capture on: (cloud, release manifest, reference URI)."""
    from servingkit.localcloud.cloud import LocalCloud

    release = json.loads(opts.release.read_text())
    if not release.get("reference"):
        raise ValueError(f"{opts.release} has no monitoring reference: retrain the model (servingkit train)")
    ctx = {Ctx.BATCH_SIZE: str(opts.batch), **opts.context}
    cloud = LocalCloud(endpoint_url=opts.endpoint_url, ctx=ctx, model_dir=opts.model_dir, release=opts.release,
                       handler=_idle)  # fmt: skip
    bucket = cloud.topology.model_bucket
    # The model directory is uploaded as it is (resources.upload_model): its reference.json is beside MLmodel.
    reference_uri = f"s3://{bucket}/models/{release['name']}/{release['version']}/reference.json"
    cloud.extra_env.update(capture_environment(bucket, reference_uri, release["reference"]["sha256"], opts))
    with cloud:
        log(f"local cloud on {cloud.endpoint_url}: capture to s3://{bucket}/{PREFIX}/ (rate {opts.sample_rate})")
        yield cloud, release, reference_uri


def _idle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The poller's handler: the replay invokes the real handler itself (in stream time), nothing goes this way."""
    return {"batchItemFailures": []}


def replay(opts: DriftOptions, start: datetime, monitor: Callable[[datetime], Any], log: Callable[[str], None]) -> int:
    """Score every minute's rides in stream time, labels filed when they arrive, the monitor at each tick."""
    from lambda_fn import runtime
    from lambda_fn.handler import stream_handler
    from lambda_fn.monitoring.s3_labels import put_labels
    from servingkit.events import kinesis_event
    from servingkit.lambda_context import LambdaContext

    emitter = runtime.capture()
    assert emitter is not None
    clock = StreamClock(start)
    emitter.now = clock
    s3 = runtime.client("s3")
    pm, n = opts.per_minute, opts.minutes * opts.per_minute
    cols = drifted_rides(n, opts.seed, opts.onset_minute * pm)
    failed = 0
    for minute in range(opts.minutes):
        t0 = start + timedelta(minutes=minute)
        for b, first in enumerate(range(minute * pm, (minute + 1) * pm, opts.batch)):
            clock.t = t0 + timedelta(seconds=60 * b * opts.batch / pm)
            rows = range(first, min(first + opts.batch, (minute + 1) * pm))
            event = kinesis_event([ride_event(cols, i) for i in rows], start_seq=10**9 + first, key_field="ride_id")
            failed += len(stream_handler(event, LambdaContext("serving-local-scorer"))["batchItemFailures"])
        arrival = t0 + timedelta(minutes=opts.label_delay_minutes)
        put_labels(s3, emitter.config.bucket, PREFIX, f"minute-{minute:04d}.jsonl",
                   label_lines(cols, range(minute * pm, (minute + 1) * pm), arrival), arrival)  # fmt: skip
        tick = t0 + timedelta(minutes=1)
        if (minute + 1) % opts.schedule_minutes == 0 and minute + 1 < opts.minutes:
            monitor(tick)
        drifted = ", drifted" if minute >= opts.onset_minute else ""
        log(f"stream minute {minute + 1}/{opts.minutes} scored ({pm} rides{drifted})")
    return n - failed


def run(opts: DriftOptions, log: Callable[[str], None] | None = None) -> DriftResult:
    """The whole drift demo (see the module's note)."""
    from lambda_fn.config import monitor_settings_from
    from lambda_fn.monitoring import job
    from lambda_fn.monitoring.s3_store import cloudwatch_client

    say = log or _err
    start = _stream_start(opts)
    with local_cloud(opts, say) as (cloud, release, reference_uri):
        bucket = cloud.topology.model_bucket
        ticks: list[dict[str, Any]] = []
        drift_only = monitor_settings_from(monitor_environment(bucket, release, reference_uri, opts, labels=False))

        def monitor(at: datetime) -> None:
            ticks.append(_tick(job.run(drift_only, at)))

        say(f"replaying {opts.minutes * opts.per_minute:,} rides over {opts.minutes} minutes of stream time "
            f"({opts.rate:g}/s), drift from minute {opts.onset_minute} ...")  # fmt: skip
        predicted = replay(opts, start, monitor, say)
        end = start + timedelta(minutes=opts.minutes)
        full = monitor_settings_from(monitor_environment(bucket, release, reference_uri, opts, labels=True))
        final = job.run(full, end)
        ticks.append(_tick(final))
        # Backfill: the same window function over the stored history (as `servingkit monitor backfill`), no metrics.
        step = timedelta(minutes=opts.schedule_minutes)
        history = [_tick(r) for r in job.run_backfill(drift_only, start, end - step, step)]
        say(f"backfill over the stored capture: {len(history)} windows re-run")
        rule = AlarmRule(period=timedelta(minutes=opts.schedule_minutes))
        points = drifted_datapoints(cloudwatch_client(), str(release["name"]), start, end, rule.period)
        local = copy_report(final.uris, opts.out_dir, cloud.clients["s3"])
        return DriftResult(
            start=start, onset=start + timedelta(minutes=opts.onset_minute), end=final.end,
            records=opts.minutes * opts.per_minute, predicted=predicted, drift=drift_rows(final.summary),
            quality=final.summary.get("quality") or {}, report_uris=final.uris, local=local,
            alarm_at=first_alarm(points, rule), rule=rule, ticks=ticks, backfill=history,
        )  # fmt: skip


def _tick(result: Any) -> dict[str, Any]:
    return {"end": result.end.isoformat(), "status": result.status, "drifted": result.drifted().get("primary", [])}


def drifted_datapoints(
    cloudwatch: Any, model: str, start: datetime, end: datetime, period: timedelta
) -> list[tuple[datetime, float]]:
    """The `DriftedFeatures` datapoints the monitor published for the primary (Maximum per period), read back."""
    from lambda_fn.config import Metric, metrics_namespace

    dims = [{"Name": Metric.MODEL_DIMENSION, "Value": model}, {"Name": Metric.VARIANT_DIMENSION, "Value": "primary"}]
    metric = {"Namespace": metrics_namespace(), "MetricName": Metric.DRIFTED_FEATURES, "Dimensions": dims}
    stat = {"Metric": metric, "Period": int(period.total_seconds()), "Stat": "Maximum"}
    resp = cloudwatch.get_metric_data(
        MetricDataQueries=[{"Id": "d", "ReturnData": True, "MetricStat": stat}],
        StartTime=start, EndTime=end + period,
    )  # fmt: skip
    result = resp["MetricDataResults"][0]
    return sorted(zip((t.astimezone(UTC) for t in result["Timestamps"]), map(float, result["Values"]), strict=True))


def copy_report(uris: Mapping[str, str], out_dir: Path, s3: Any) -> dict[str, str]:
    """Download the window's summary and short report next to the project (`out_dir`)."""
    from lambda_fn.monitoring.s3_store import split_s3_uri

    out_dir.mkdir(parents=True, exist_ok=True)
    local = {}
    for name in ("summary.json", "report.html"):
        if name in uris:
            bucket, key = split_s3_uri(uris[name])
            path = out_dir / name
            path.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            local[name] = str(path)
    return local


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class DemoArgs(Protocol):
    """What `servingkit demo --drift` passes on (`servingkit.demo.DemoOptions` has these)."""

    @property
    def records(self) -> int: ...

    @property
    def rate(self) -> float | None: ...

    @property
    def seed(self) -> int: ...

    @property
    def target(self) -> str: ...

    @property
    def context(self) -> dict[str, str]: ...

    @property
    def model_dir(self) -> Path: ...

    @property
    def release(self) -> Path: ...


def run_for_demo(demo: DemoArgs, endpoint_url: str | None) -> int:
    """`servingkit demo --drift` with the demo's options (records, rate, seed, context, model; the endpoint
    resolved by the demo: None for the embedded moto server); a LocalStack this process started is stopped."""
    opts = DriftOptions(
        records=demo.records, rate=demo.rate or DriftOptions.rate, seed=demo.seed, endpoint_url=endpoint_url,
        target=demo.target, context=dict(demo.context), model_dir=demo.model_dir, release=demo.release,
    )  # fmt: skip
    try:
        return run_drift_demo(opts)
    finally:
        if demo.target == "localstack":
            from servingkit.localcloud import localstack

            localstack.stop()  # only an instance this process started


def run_drift_demo(opts: DriftOptions) -> int:
    """`servingkit demo --drift`: the table on stdout, the figures as the last line (one JSON object); 0 when the
    run completed and the drift was detected, 1 when it was not, 2 for a configuration error."""
    from infra.topology import TopologyError
    from lambda_fn.config import ConfigError
    from servingkit.localcloud.faults import EmulatorFaultError
    from servingkit.localcloud.resources import ResourceError

    try:
        result = run(opts)
    except (TopologyError, ResourceError, ConfigError, ValueError, OSError) as exc:
        _err(f"error: {exc}")
        return 2
    except EmulatorFaultError as exc:
        _err(f"STOPPED: {exc.reason}")
        return 1
    print(render(result), flush=True)
    print(json.dumps(result.figures()), flush=True)
    return 0 if result.alarm_at is not None else 1
