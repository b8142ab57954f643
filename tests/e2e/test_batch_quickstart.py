"""docs/batch.md's quick start as a user runs it: generate raw rides, score them with the demo release."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers import run_cli


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_generated_rides_score_with_the_demo_release(
    fmt: str, release: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, meta = release
    data, out = tmp_path / "rides", tmp_path / "out"
    assert (
        run_cli(["make-rides", "-o", str(data), "--rows", "3000", "--files", "3", "--format", fmt, "--bad", "0.01"])
        == 0
    )
    made = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert made["rows"] == 3000 and made["unscoreable"] > 0
    assert sorted(p.name for p in data.iterdir()) == [f"rides-{k:03d}.{fmt}" for k in range(3)]

    # Parquet with the defaults (the documented command); the text formats in-process, to keep the tier quick.
    extra = [] if fmt == "parquet" else ["--parallelism", "processes", "--workers", "1"]
    argv = [str(data), "-o", str(out), "--release", str(meta), "--model", str(model), "--features-field=", *extra]
    assert run_cli(["batch", *argv, "--no-progress", "--chunk-size", "1000"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert summary["rows_in"] == 3000
    assert summary["rejected"] == made["unscoreable"]
    assert summary["scored"] + summary["rejected"] == 3000
    assert set(summary["reasons"]) == {"hook_error", "schema_violation"}  # bad zone id and date; no distance
    assert summary["parallelism"] == ("processes (2)" if fmt == "parquet" else "in-process")
    scored = pq.read_table(out / "scored").to_pandas()
    assert scored["ride_id"].is_unique and len(scored) == summary["scored"]
    assert scored["prediction"].between(1, 300).all()  # minutes
    rejected = pq.read_table(out / "rejected").to_pandas()
    assert {json.loads(d)["ride_id"] for d in rejected["data"]} == set(rejected["id"])
