"""The quality job without AWS: the window of captured predictions, late and missing labels, hashed ids, metrics
against scikit-learn, the degradation ratio, shadow vs primary on the same ids, metrics and the window summary."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, mean_squared_error, roc_auc_score

from lambda_fn.config import ConfigError, Metric, monitor_settings_from
from lambda_fn.monitoring import quality_job as qj
from lambda_fn.monitoring.labels import Captured, Label, read_labels
from lambda_fn.monitoring.s3_labels import label_key
from lambda_fn.monitoring.sampling import hash_id
from lambda_fn.monitoring.window import MetricDatum, Target, run_window
from tests.monitoring_data import profiles, reference
from tests.unit.test_monitor_window import MemorySink, MemoryStore

END = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DELAY = timedelta(minutes=30)
SPAN = timedelta(minutes=60)
# The captured window is [10:30, 11:30); labels are read up to 12:00.
START = END - DELAY - SPAN


class Captures:
    def __init__(self, records: list[Captured]) -> None:
        self.records = records
        self.asked: list[tuple[datetime, datetime]] = []

    def captured(self, start: datetime, end: datetime) -> list[Captured]:
        self.asked.append((start, end))
        return [c for c in self.records if start <= c.time < end]


class Labels:
    def __init__(self, labels: dict[str, Label]) -> None:
        self.items = labels
        self.asked: list[tuple[datetime, datetime]] = []

    def labels(self, start: datetime, end: datetime) -> qj.LabelBatch:
        self.asked.append((start, end))
        return qj.LabelBatch(dict(self.items), 0, 1)


def _cap(i: int, pred: float, variant: str = "primary", minute: int = 0, version: str = "3") -> Captured:
    return Captured(f"ride-{i}", pred, START + timedelta(minutes=minute), version, variant)


def _label(i: int, value: float, minutes_after: int) -> Label:
    return Label(f"ride-{i}", value, START + timedelta(minutes=minutes_after))


def test_window_join_counts_late_and_missing_labels() -> None:
    caps = Captures([
        _cap(0, 10.0),  # on time
        _cap(1, 12.0),  # late: 31 minutes after its prediction
        _cap(2, 14.0),  # missing
        _cap(3, 9.0, minute=-1),  # before the window: not read
        _cap(4, 9.0, minute=60),  # at the window's end (exclusive): its labels are not all due yet
    ])  # fmt: skip
    labels = Labels({"ride-0": _label(0, 11.0, 29), "ride-1": _label(1, 12.0, 31), "ride-9": _label(9, 1.0, 5)})
    q = qj.evaluate(caps, labels, END, qj.QualityConfig(delay=DELAY, span=SPAN))
    assert caps.asked == [(START, END - DELAY)]
    assert labels.asked == [(START, END)]
    c = q["counts"]
    assert (c["captured"], c["joined"], c["late"], c["missing"], c["pending"], c["orphans"]) == (3, 1, 1, 1, 0, 1)
    assert q["variants"]["primary"]["n"] == 1 and q["variants"]["primary"]["mae"] == pytest.approx(1.0)
    assert q["metrics"] == [
        {"model_version": "3", "variant": "primary", "unusable": 0, "n": 1, "mae": 1.0, "rmse": 1.0}
    ]
    json.dumps(q, allow_nan=False)  # strict JSON


def test_labels_that_arrive_after_the_run_are_not_read() -> None:
    # A run (and a backfill re-run of it) sees the labels that had arrived by its end, no later ones.
    caps = Captures([_cap(0, 10.0, minute=50)])
    after = Label("ride-0", 11.0, END + timedelta(minutes=1))
    q = qj.evaluate(caps, Labels({"ride-0": after}), END, qj.QualityConfig(delay=DELAY, span=SPAN))
    assert (q["counts"]["joined"], q["counts"]["late"], q["counts"]["missing"]) == (0, 0, 1)


def test_raw_label_ids_are_hashed_with_captures_key() -> None:
    key = b"k" * 32
    caps = Captures([Captured(hash_id("ride-7", key), 5.0, START, "3", "primary")])
    labels = Labels({"ride-7": Label("ride-7", 7.0, START + timedelta(minutes=1))})
    hashed = qj.evaluate(caps, labels, END, qj.QualityConfig(delay=DELAY, span=SPAN, id_key=key))
    assert hashed["counts"]["joined"] == 1 and hashed["variants"]["primary"]["mae"] == 2.0
    plain = qj.evaluate(caps, labels, END, qj.QualityConfig(delay=DELAY, span=SPAN))
    assert plain["counts"]["joined"] == 0 and plain["counts"]["orphans"] == 1 and plain["counts"]["missing"] == 1


def test_regression_and_classification_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(20, 5, 400)
    p = y + rng.normal(0, 2, 400)
    caps = Captures([_cap(i, float(p[i]), minute=i % 60) for i in range(400)])
    labels = Labels({f"ride-{i}": _label(i, float(y[i]), i % 60) for i in range(400)})
    reg = qj.evaluate(caps, labels, END, qj.QualityConfig(delay=DELAY, span=SPAN))["variants"]["primary"]
    assert reg["n"] == 400
    assert reg["mae"] == pytest.approx(mean_absolute_error(y, p))
    assert reg["rmse"] == pytest.approx(math.sqrt(mean_squared_error(y, p)))

    yc = rng.integers(0, 2, 400)
    s = np.clip(yc * 0.3 + rng.random(400) * 0.7, 0, 1)
    caps = Captures([_cap(i, float(s[i]), minute=i % 60) for i in range(400)])
    labels = Labels({f"ride-{i}": _label(i, float(yc[i]), i % 60) for i in range(400)})
    config = qj.QualityConfig(delay=DELAY, span=SPAN, task="classification")
    cls = qj.evaluate(caps, labels, END, config)["variants"]["primary"]
    assert cls["accuracy"] == pytest.approx(accuracy_score(yc, s >= 0.5))
    assert cls["f1"] == pytest.approx(f1_score(yc, s >= 0.5))
    assert cls["auc"] == pytest.approx(roc_auc_score(yc, s))


def test_degradation_ratio_to_training() -> None:
    assert qj.ratio("rmse", 6.0, 4.0) == pytest.approx(1.5)  # error up 50 %: 1.5
    assert qj.ratio("mae", 2.0, 4.0) == pytest.approx(0.5)  # better than training
    assert qj.ratio("auc", 0.6, 0.9) == pytest.approx(1.5)  # a score: training / current
    assert qj.ratio("rmse", 1.0, 0.0) is None and qj.ratio("auc", 0.0, 0.9) is None
    assert qj.ratio("rmse", None, 4.0) is None
    d = qj.degradation({"mae": 3.0, "rmse": 6.0, "n": 10}, {"mae": 3.0, "rmse": 4.0, "baseline_rmse": 9.0})
    assert d == {"ratios": {"mae": 1.0, "rmse": 1.5}, "worst": 1.5}
    assert qj.degradation({"mae": 3.0}, {}) == {"ratios": {}, "worst": None}
    assert qj.training_metrics({"rmse": 4.0, "baseline_rmse": 9.0, "mae": True, "f1": float("nan")}.items()) == {
        "rmse": 4.0
    }


def test_shadow_compared_with_primary_on_the_same_labelled_ids() -> None:
    caps = [_cap(i, 10.0, "primary", minute=i) for i in range(6)]  # primary error 1 on each
    caps += [_cap(i, 13.0, "shadow", minute=i) for i in range(2, 8)]  # shadow error 2 on each
    labels = {f"ride-{i}": _label(i, 11.0, i + 1) for i in range(8)}
    labels["ride-3"] = _label(3, 11.0, 3 + 40)  # late for both: left out of the comparison
    config = qj.QualityConfig(delay=DELAY, span=SPAN, training={"mae": 1.0, "rmse": 1.0})
    q = qj.evaluate(Captures(caps), Labels(labels), END, config)
    svp = q["shadow_vs_primary"]
    assert svp["n"] == 3  # ids 2, 4, 5: captured by both, labelled on time
    assert svp["primary"]["mae"] == pytest.approx(1.0) and svp["shadow"]["mae"] == pytest.approx(2.0)
    assert q["variants"]["primary"]["n"] == 5 and q["variants"]["shadow"]["n"] == 5
    assert q["variants"]["shadow"]["degradation"]["worst"] == pytest.approx(2.0)
    assert q["variants"]["primary"]["degradation"]["worst"] == pytest.approx(1.0)
    none = qj.evaluate(Captures(caps[:6]), Labels(labels), END, config)
    assert none["shadow_vs_primary"] is None


def test_metric_data_is_small_and_named() -> None:
    caps = [_cap(i, 10.0, v, minute=i) for v in ("primary", "shadow") for i in range(4)]
    labels = {f"ride-{i}": _label(i, 12.0, i) for i in range(4)}
    config = qj.QualityConfig(delay=DELAY, span=SPAN, training={"mae": 1.0, "rmse": 1.0})
    data = qj.metric_data("taxi", qj.evaluate(Captures(caps), Labels(labels), END, config))
    assert len(data) == 8  # (2 quality + rows + degradation) per variant
    names = {(d.name, dict(d.dimensions).get(Metric.METRIC_DIMENSION)) for d in data}
    assert names == {
        (Metric.MODEL_QUALITY, "mae"), (Metric.MODEL_QUALITY, "rmse"),
        (Metric.LABELLED_ROWS, None), (Metric.QUALITY_DEGRADATION, None),
    }  # fmt: skip
    degr = [d for d in data if d.name == Metric.QUALITY_DEGRADATION]
    assert [d.value for d in degr] == [2.0, 2.0]
    assert all(dict(d.dimensions)[Metric.MODEL_DIMENSION] == "taxi" for d in data)
    untrained = qj.metric_data("taxi", qj.evaluate(Captures(caps), Labels(labels), END, qj.QualityConfig(DELAY, SPAN)))
    assert len(untrained) == 6  # no training metrics: no degradation value


def test_run_window_writes_quality_into_summary_report_and_metrics() -> None:
    ref = reference()
    store = MemoryStore(profiles(ref, END - timedelta(minutes=12), count=3))
    sink = MemorySink()
    caps = Captures([_cap(i, 10.0, minute=i) for i in range(4)])
    labels = Labels({f"ride-{i}": _label(i, 12.0, i) for i in range(3)})
    config = qj.QualityConfig(delay=DELAY, span=SPAN, training={"mae": 1.0, "rmse": 1.0})

    def step(end: datetime) -> tuple[dict[str, object], list[MetricDatum]]:
        section = qj.evaluate(caps, labels, end, config)
        return section, qj.metric_data("m", section)

    result = run_window(Target("m", "a" * 64, ref), store, END, metrics=sink, quality=step)
    assert result.summary["quality"]["counts"]["joined"] == 3
    assert result.summary["windows"]["short"]["labels"]["metrics"][0]["mae"] == pytest.approx(2.0)
    summary = json.loads(store.reports[END]["summary.json"][0])
    assert summary["quality"]["variants"]["primary"]["degradation"]["worst"] == pytest.approx(2.0)
    html = store.reports[END]["report.html"][0].decode()
    assert "Model quality from labels" in html and "joined 3" in html and "missing 1" in html
    sent = sink.sent[0][1]
    assert {Metric.MODEL_QUALITY, Metric.LABELLED_ROWS, Metric.QUALITY_DEGRADATION} <= {d.name for d in sent}
    assert result.metrics == len(sent)


def test_label_lines_in_both_formats_and_the_layout() -> None:
    lines = [
        json.dumps({"id": "ride-1", "label": 12.5, "time": "2026-12-01T11:00:00Z"}),
        json.dumps(
            {
                "groundTruthData": {"data": "13.5", "encoding": "CSV"},
                "eventMetadata": {"eventId": "ride-2"},
                "eventVersion": "0",
            }
        ),
    ]
    found, bad = read_labels(lines, arrived=END)
    assert bad == 0 and found["ride-1"].value == 12.5 and found["ride-2"].value == 13.5
    assert found["ride-2"].arrived == END
    assert (
        label_key("monitoring", "batch-1.jsonl.gz", END) == "monitoring/labels/date=2026-12-01/hour=12/batch-1.jsonl.gz"
    )
    with pytest.raises(ValueError, match="jsonl"):
        label_key("monitoring", "labels.csv", END)


BASE_ENV = {
    "MONITOR_BUCKET": "bucket",
    "MONITOR_MODEL_NAME": "m",
    "MONITOR_MODEL_SHA256": "a" * 64,
    "MONITOR_REFERENCE_URI": "s3://b/ref.json",
    "MONITOR_REFERENCE_SHA256": "b" * 64,
}


def test_label_settings() -> None:
    s = monitor_settings_from(BASE_ENV)
    assert (s.monitor_labels, s.monitor_label_delay_minutes, s.monitor_label_span_minutes) == (False, 60, 60)
    assert s.monitor_label_task == "regression" and s.training_metrics() == {}
    s = monitor_settings_from(BASE_ENV | {
        "MONITOR_LABELS": "true", "MONITOR_LABEL_DELAY_MINUTES": "120", "MONITOR_LABEL_SPAN_MINUTES": "15",
        "MONITOR_LABEL_TASK": "classification", "MONITOR_TRAINING_METRICS": '{"auc": 0.9}',
    })  # fmt: skip
    assert s.monitor_labels and s.monitor_label_delay_minutes == 120 and s.monitor_label_span_minutes == 15
    assert s.monitor_label_task == "classification" and s.training_metrics() == {"auc": 0.9}
    for env, value in (
        ("MONITOR_LABELS", "yes please"),
        ("MONITOR_LABEL_DELAY_MINUTES", "-1"),
        ("MONITOR_LABEL_SPAN_MINUTES", "0"),
        ("MONITOR_LABEL_TASK", "ranking"),
        ("MONITOR_TRAINING_METRICS", '{"rmse": "high"}'),
        ("MONITOR_TRAINING_METRICS", "[1]"),
    ):
        with pytest.raises(ConfigError, match=env):
            monitor_settings_from(BASE_ENV | {env: value})
