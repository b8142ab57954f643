"""Late ground truth: parsing (incl. SageMaker's format), the delay-window join, and the metrics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, roc_auc_score

from lambda_fn.monitoring.capture import CaptureRecord, ModelIdentity, encode_objects, read_lines
from lambda_fn.monitoring.labels import (
    Captured,
    Label,
    LabelError,
    auc,
    classification_metrics,
    join,
    metrics,
    parse_label_line,
    read_labels,
    regression_metrics,
)

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
DELAY = timedelta(hours=1)


def test_parses_sagemaker_ground_truth_and_kit_lines() -> None:
    csv = {
        "groundTruthData": {"data": "1", "encoding": "CSV"},
        "eventMetadata": {"eventId": "ride-1"},
        "eventVersion": "0",
    }
    js = {"groundTruthData": {"data": '{"label": 23.5}', "encoding": "JSON"}, "eventMetadata": {"eventId": "ride-2"},
          "eventVersion": "0"}  # fmt: skip
    assert parse_label_line(json.dumps(csv)) == Label("ride-1", 1.0)
    assert parse_label_line(json.dumps(js)).value == 23.5
    assert parse_label_line(b'{"id": "r", "label": 3, "time": "2026-12-01T10:30:00Z"}').arrived == T0 + timedelta(
        minutes=30
    )
    for bad in (
        "not json",
        "[1]",
        '{"id": 1}',
        '{"groundTruthData": {"data": "1", "encoding": "XML"}, "eventMetadata": {"eventId": "x"}}',
    ):
        with pytest.raises(LabelError):
            parse_label_line(bad)
    labels, unreadable = read_labels([json.dumps(csv), "garbage", "", json.dumps(js)])
    assert set(labels) == {"ride-1", "ride-2"} and unreadable == 1


def _captured(i: int, variant: str = "primary", version: str = "3") -> Captured:
    return Captured(f"ride-{i}", float(i), T0 + timedelta(minutes=i), version, variant)


def test_join_counts_joined_late_missing_pending_and_orphans() -> None:
    captured = [_captured(i) for i in range(6)] + [_captured(0, "shadow")]
    labels = {
        "ride-0": Label("ride-0", 1.0, T0 + timedelta(minutes=10)),  # on time (both variants)
        "ride-1": Label("ride-1", 2.0, T0 + timedelta(hours=2)),  # late: after 10:01 + 1 h
        "ride-2": Label("ride-2", 2.0, None),  # no arrival time: on time
        # ride-3, ride-4: none, window passed; ride-5: none, window open at `now`
        "ride-99": Label("ride-99", 0.0, T0),  # not captured (sampling)
    }
    now = T0 + timedelta(minutes=5) + DELAY - timedelta(seconds=1)
    j = join(captured, labels, delay=DELAY, now=now)
    assert j.joined == 3 and j.late == 1 and j.missing == 2 and j.pending == 1 and j.orphans == 1
    assert j.pairs[("3", "primary")] == [(0.0, 1.0), (2.0, 2.0)] and j.pairs[("3", "shadow")] == [(0.0, 1.0)]
    rows = metrics(j, "regression")
    assert [(r["variant"], r["n"]) for r in rows] == [("primary", 2), ("shadow", 1)]
    assert rows[0]["mae"] == pytest.approx(0.5) and rows[0]["rmse"] == pytest.approx(np.sqrt(0.5))


def test_join_reads_capture_records_end_to_end() -> None:
    model = ModelIdentity("m", "7", "s" * 64)
    recs = [CaptureRecord(f"ride-{i}", f"e{i}", {"x": i}, 0.9 if i % 2 else 0.2, model, v, T0 + timedelta(seconds=i))
            for i in range(10) for v in ("primary", "shadow")]  # fmt: skip
    objects = encode_objects(recs, "p").objects
    assert len(objects) == 2  # one per variant
    captured = [Captured.from_record(d) for _, body in objects for d in read_lines(body)]
    truth = [{"data": str(i % 2), "encoding": "CSV"} for i in range(10)]
    lines = [json.dumps({"groundTruthData": t, "eventMetadata": {"eventId": f"ride-{i}"}, "eventVersion": "0"})
             for i, t in enumerate(truth)]  # fmt: skip
    labels, _ = read_labels(lines, arrived=T0 + timedelta(minutes=5))
    rows = metrics(join(captured, labels, delay=DELAY, now=T0 + DELAY), "classification")
    assert [(r["model_version"], r["variant"], r["n"], r["accuracy"], r["auc"]) for r in rows] == [
        ("7", "primary", 10, 1.0, 1.0),
        ("7", "shadow", 10, 1.0, 1.0),
    ]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=2, max_size=80))
def test_classification_metrics_match_scikit_learn(rows: list[tuple[float, bool]]) -> None:
    s = np.array([r[0] for r in rows])
    y = np.array([r[1] for r in rows])
    m = classification_metrics(s, y)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, s >= 0.5))
    if y.any() or (s >= 0.5).any():
        assert m["f1"] == pytest.approx(f1_score(y, s >= 0.5))
    if y.all() or not y.any():
        assert m["auc"] is None
    else:
        assert m["auc"] == pytest.approx(roc_auc_score(y, s))


def test_regression_metrics_and_empty_windows() -> None:
    assert regression_metrics(np.array([1.0, 3.0]), np.array([2.0, 2.0]))["mae"] == mean_absolute_error([2, 2], [1, 3])
    assert regression_metrics(np.array([]), np.array([])) == {"n": 0, "mae": None, "rmse": None}
    assert classification_metrics(np.array([]), np.array([]))["auc"] is None
    assert auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5  # ties count half
