"""The release's training metrics: the model directory's metrics.json, read by publish for the quality job."""

from __future__ import annotations

from pathlib import Path

import pytest

from lambda_fn.monitoring.quality_job import METRICS_FILE, metrics_file, read_metrics_file
from servingkit.publish import PublishError, training_metrics


def test_metrics_file_round_trip_and_publish_reads_it(tmp_path: Path) -> None:
    body = metrics_file({"rmse": 4.5, "mae": 3.25, "baseline_rmse": 9.0}, rows=800)
    assert body == metrics_file({"baseline_rmse": 9.0, "mae": 3.25, "rmse": 4.5}, rows=800)  # canonical
    assert read_metrics_file(body) == {"mae": 3.25, "rmse": 4.5}
    (tmp_path / METRICS_FILE).write_bytes(body)
    assert training_metrics(tmp_path, None, False, None) == (
        {"mae": 3.25, "rmse": 4.5},
        "the model directory (metrics.json)",
    )
    assert training_metrics(tmp_path / "absent", None, False, None) == (None, None)


def test_a_broken_metrics_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / METRICS_FILE).write_text('["not", "metrics"]')
    with pytest.raises(PublishError, match=METRICS_FILE):
        training_metrics(tmp_path, None, False, None)
