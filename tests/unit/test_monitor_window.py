"""The monitor window job without AWS: windows, metrics, backfill ends, settings, the pinned reference."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lambda_fn.config import ConfigError, monitor_settings_from
from lambda_fn.monitoring.job import event_time
from lambda_fn.monitoring.profile import Profile
from lambda_fn.monitoring.reference import Reference
from lambda_fn.monitoring.release_reference import ReferencePinError, load_reference, verify_reference
from lambda_fn.monitoring.s3_store import Location, key_time, profile_body, read_profile_body
from lambda_fn.monitoring.window import (
    MetricDatum,
    ReadStats,
    Target,
    Windows,
    backfill,
    metric_data,
    run_window,
    window_end,
    window_ends,
)
from servingkit.publish_reference import ReferenceError, checked, read_frame
from tests.monitoring_data import profiles, reference

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
REF = reference()


class MemoryStore:
    def __init__(self, items: list[tuple[datetime, Profile]]) -> None:
        self.items = items
        self.reports: dict[datetime, dict[str, tuple[bytes, str]]] = {}

    def profiles(
        self, reference: Reference, start: datetime, end: datetime
    ) -> tuple[dict[str, list[Profile]], ReadStats]:
        out: dict[str, list[Profile]] = {}
        for at, p in self.items:
            if start <= at < end:
                out.setdefault(p.variant, []).append(p)
        return out, ReadStats(read=sum(len(v) for v in out.values()))

    def write_report(self, end: datetime, files: Mapping[str, tuple[bytes, str]]) -> dict[str, str]:
        self.reports[end] = dict(files)
        return {name: f"mem://{end.isoformat()}/{name}" for name in files}


class MemorySink:
    def __init__(self) -> None:
        self.sent: list[tuple[datetime, list[MetricDatum]]] = []

    def publish(self, data: Sequence[MetricDatum], timestamp: datetime) -> int:
        self.sent.append((timestamp, list(data)))
        return len(data)


def _target() -> Target:
    return Target("tiny", "ab" * 32, REF, "3")


def test_a_window_flags_the_drifted_feature_and_publishes_few_metrics() -> None:
    items = profiles(REF, T0 + timedelta(minutes=1), distance_shift=15.0)
    store, sink = MemoryStore(items), MemorySink()
    result = run_window(_target(), store, T0 + timedelta(minutes=15, seconds=42), metrics=sink)
    assert result.end == T0 + timedelta(minutes=15)
    assert result.drifted() == {"primary": ["distance"]} and result.status == "alert"
    assert set(store.reports[result.end]) == {"summary.json", "report.html", "report-long.html"}
    summary = json.loads(store.reports[result.end]["summary.json"][0])
    assert summary["model"] == {"name": "tiny", "sha256": "ab" * 32, "version": "3"}
    assert summary["windows"]["short"]["profiles"]["read"] == 4
    ((stamp, data),) = sink.sent
    assert stamp == result.end and result.metrics == len(data) == len(REF.features) + 1 + 3
    names = [d.name for d in data]
    assert names.count("DriftScore") == 4 and {"DriftedFeatures", "QualityViolations", "MonitorRows"} <= set(names)
    drifted = next(d for d in data if d.name == "DriftedFeatures")
    assert drifted.value == 1 and drifted.dimensions == (("model", "tiny"), ("variant", "primary"))


def test_an_insufficient_window_publishes_no_drift_score() -> None:
    items = profiles(REF, T0 + timedelta(minutes=1), count=1)  # 500 rows < 1,000
    result = run_window(_target(), MemoryStore(items), T0 + timedelta(minutes=15))
    data = metric_data(_target(), result.summary["windows"]["short"])
    assert [d.name for d in data] == ["DriftedFeatures", "QualityViolations", "MonitorRows"]
    assert result.metrics == 0  # no sink given


def test_an_empty_window_is_ok_with_no_variants() -> None:
    result = run_window(_target(), MemoryStore([]), T0)
    assert result.status == "ok" and result.drifted() == {}


def test_backfill_runs_every_window_end_once() -> None:
    assert window_ends(T0, T0 + timedelta(hours=1), timedelta(minutes=15)) == [
        T0 + timedelta(minutes=m) for m in (15, 30, 45, 60)
    ]
    assert window_ends(T0, T0 + timedelta(minutes=44), timedelta(minutes=15)) == [
        T0 + timedelta(minutes=m) for m in (15, 30)
    ]
    with pytest.raises(ValueError, match="positive"):
        window_ends(T0, T0, timedelta(0))
    store = MemoryStore(profiles(REF, T0 + timedelta(minutes=31), distance_shift=15.0))
    results = backfill(_target(), store, T0, T0 + timedelta(hours=1), timedelta(minutes=15))
    assert [r.drifted() for r in results] == [{}, {}, {"primary": ["distance"]}, {}]
    assert sorted(store.reports) == [r.end for r in results]


def test_windows_and_window_end() -> None:
    with pytest.raises(ValueError, match="short <= long"):
        Windows(timedelta(hours=2), timedelta(hours=1))
    assert window_end(datetime(2026, 12, 1, 10, 7, 59, 999)) == datetime(2026, 12, 1, 10, 7, tzinfo=UTC)


def test_profile_keys_and_bodies() -> None:
    loc = Location("b", "mon/", "taxi ride/x", "ab" * 32)
    at = datetime(2026, 12, 1, 9, 5, 7, tzinfo=UTC)
    key = loc.profile_key("primary", at, "u1")
    assert (
        key == f"mon/profiles/model=taxi%20ride%2Fx/sha256={'ab' * 32}/variant=primary/date=2026-12-01/hour=09/"
        "20261201T090507Z-u1.json"
    )
    assert key_time(key) == at
    assert loc.report_dir(at).endswith("/date=2026-12-01/hour=09/end=20261201T090507Z")
    (_, p), *_ = profiles(REF, at)
    when, back = read_profile_body(profile_body(p, {"name": "x"}, at), REF)
    assert when == at and back.to_dict() == p.to_dict()


def test_monitor_settings_defaults_and_errors() -> None:
    env = {
        "MONITOR_BUCKET": "mon-bucket",
        "MONITOR_MODEL_NAME": "tiny",
        "MONITOR_MODEL_SHA256": "AB" * 32,
        "MONITOR_REFERENCE_URI": "s3://mon-bucket/r.json",
        "MONITOR_REFERENCE_SHA256": REF.sha256,
    }
    s = monitor_settings_from(env)
    assert (s.monitor_prefix, s.monitor_short_window_minutes, s.monitor_long_window_hours) == ("monitoring", 15, 24)
    assert s.monitor_model_sha256 == "ab" * 32 and s.monitor_metrics and s.monitor_min_rows == 1000
    with pytest.raises(ConfigError, match="MONITOR_BUCKET, MONITOR_MODEL_NAME"):
        monitor_settings_from({})
    with pytest.raises(ConfigError, match="MONITOR_SHORT_WINDOW_MINUTES='0'"):
        monitor_settings_from({**env, "MONITOR_SHORT_WINDOW_MINUTES": "0"})
    with pytest.raises(ConfigError, match="MONITOR_METRICS='maybe': must be true or false"):
        monitor_settings_from({**env, "MONITOR_METRICS": "maybe"})
    with pytest.raises(ConfigError, match="MONITOR_REFERENCE_URI"):
        monitor_settings_from({**env, "MONITOR_REFERENCE_URI": "http://x/r.json"})


def test_event_time() -> None:
    assert event_time({"time": "2026-12-01T10:30:00Z"}) == datetime(2026, 12, 1, 10, 30, tzinfo=UTC)
    assert event_time({"at": "2026-12-01T10:31:00+00:00", "time": "x"}) == datetime(2026, 12, 1, 10, 31, tzinfo=UTC)
    assert event_time({}) is None and event_time(None) is None
    with pytest.raises(ValueError, match="not an ISO 8601 time"):
        event_time({"time": "yesterday"})


def test_the_pinned_reference_is_verified(tmp_path: Path) -> None:
    body = REF.to_json()
    assert verify_reference(body, REF.sha256.upper()) == REF
    path = tmp_path / "reference.json"
    path.write_bytes(body)
    assert load_reference(f"file://{path}", REF.sha256) == REF
    with pytest.raises(ReferencePinError, match="is not the pinned"):
        verify_reference(body.replace(b'"rows":5000', b'"rows":5001'), REF.sha256)
    pretty = json.dumps(json.loads(body), indent=1).encode()  # same content, other bytes
    with pytest.raises(ReferencePinError, match="is not the pinned"):
        verify_reference(pretty, REF.sha256)
    with pytest.raises(ReferencePinError, match="cannot read the reference"):
        load_reference(str(tmp_path / "absent.json"), REF.sha256)


def test_publish_checks_a_reference_and_reads_frames(tmp_path: Path) -> None:
    ok = checked(REF.to_json(), "here", True)
    assert ok.sha256 == REF.sha256 and ok.features == ("zone", "distance", "hour") and ok.rows == 5000
    with pytest.raises(ReferenceError, match="canonical"):
        checked(json.dumps(json.loads(REF.to_json()), indent=1).encode(), "here", True)
    with pytest.raises(ReferenceError, match="cannot be read"):
        checked(b"{}", "here", True)
    (tmp_path / "d.jsonl").write_text('{"a": 1}\n{"a": 2}\n')
    (tmp_path / "d.csv").write_text("a\n1\n2\n")
    assert list(read_frame(tmp_path / "d.jsonl")["a"]) == [1, 2] == list(read_frame(tmp_path / "d.csv")["a"])
    with pytest.raises(ReferenceError, match=r"give a \.csv, \.parquet or \.jsonl"):
        read_frame(tmp_path / "d.txt")
