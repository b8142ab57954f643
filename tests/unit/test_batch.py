"""Batch scoring, local engine: multi-file datasets in every format, bad rows rejected with reasons."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from lambda_fn.config import settings_from
from lambda_fn.model_store import load_model
from servingkit.batch import BatchJobError, JobConfig, Summary, model_env, run_local
from tests.helpers import save_mlflow_model, tiny_pipeline, tiny_row


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_mlflow_model(tmp_path_factory.mktemp("batch-model") / "model", tiny_pipeline())


def config(model_dir: Path, **extra: str) -> JobConfig:
    return JobConfig(model_env(None, release=None, MODEL_URI=str(model_dir), ID_FIELD="id", **extra))


def run(*args: Any, **kwargs: Any) -> Summary:
    """The local engine scoring in-process (one worker): fast to start, and monkeypatches apply."""
    return run_local(*args, **{"progress": False, "workers": 1, **kwargs})


def good_rows(start: int, n: int) -> list[dict[str, Any]]:
    return [{"id": f"r{i:04d}", **tiny_row(i)} for i in range(start, start + n)]


def write_parquet_dataset(root: Path) -> dict[str, str]:
    """Three Parquet files; the last two hold rows the schema rejects. Returns {id: expected reason}."""
    root.mkdir(parents=True)
    pd.DataFrame(good_rows(0, 40)).to_parquet(root / "part-0.parquet")
    rows = good_rows(40, 30)
    rows[3]["distance"] = None  # missing required field
    rows[7]["distance"] = math.inf  # not a finite number
    pd.DataFrame(rows).to_parquet(root / "part-1.parquet")
    rows = good_rows(70, 25)
    rows[0]["hour"] = None
    pd.DataFrame(rows).astype({"hour": "Int64"}).to_parquet(root / "part-2.parquet")
    (root / "_SUCCESS").write_text("")  # markers are not data
    return {"r0043": "schema_violation", "r0047": "schema_violation", "r0070": "schema_violation"}


def write_jsonl_dataset(root: Path) -> dict[str, str]:
    """Two JSON-lines files with the stream's payload shape and every kind of bad line."""
    root.mkdir(parents=True)
    lines = [
        json.dumps({"id": r["id"], "features": {k: v for k, v in r.items() if k != "id"}}) for r in good_rows(0, 20)
    ]
    (root / "a.jsonl").write_text("\n".join(lines) + "\n\n")
    bad = [
        json.dumps({"id": "bad-distance", "features": {"zone": "a", "distance": "far", "hour": 3}}),
        "{not json",
        json.dumps({"id": "no-features", "zone": "a"}),
        json.dumps({"id": "bad-hour", "features": {"zone": "b", "distance": 2.0, "hour": 2.5}}),
        json.dumps(["an", "array"]),
    ]
    more = [
        json.dumps({"id": r["id"], "features": {k: v for k, v in r.items() if k != "id"}}) for r in good_rows(20, 5)
    ]
    (root / "b.jsonl").write_text("\n".join(more[:2] + bad + more[2:]) + "\n")
    return {
        "bad-distance": "schema_violation",
        "no-features": "missing_features_field",
        "bad-hour": "schema_violation",
    }


def expected_predictions(model_dir: Path, rows: list[dict[str, Any]]) -> dict[str, float]:
    """Independent of the kit's path: the estimator itself on a plain frame."""
    model = load_model(settings_from({"MODEL_URI": str(model_dir)}))
    frame = pd.DataFrame(rows)
    preds = model.estimator.predict(frame[["zone", "distance", "hour"]])
    return dict(zip(frame["id"], preds.tolist(), strict=True))


def read_out(path: Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


def test_multi_file_parquet_scores_good_rows_and_rejects_bad_ones(model_dir: Path, tmp_path: Path) -> None:
    bad = write_parquet_dataset(tmp_path / "in")
    summary = run([str(tmp_path / "in")], str(tmp_path / "out"), config(model_dir), chunk_size=16)

    assert (summary.inputs, summary.rows_in, summary.scored, summary.rejected) == (3, 95, 92, 3)
    assert summary.reasons == {"schema_violation": 3}
    scored = read_out(tmp_path / "out" / "scored")
    expected = expected_predictions(model_dir, [r for r in good_rows(0, 95) if r["id"] not in bad])
    got = dict(zip(scored["id"], scored["prediction"], strict=True))
    assert got.keys() == expected.keys()
    assert all(got[k] == pytest.approx(v, rel=1e-12) for k, v in expected.items())
    assert set(scored["model_sha256"]) == {summary.model["sha256"]}

    rejected = read_out(tmp_path / "out" / "rejected").set_index("id")
    assert dict(rejected["reason"]) == bad
    assert "distance" in rejected.loc["r0043", "detail"] and "missing" in rejected.loc["r0043", "detail"]
    assert "finite" in rejected.loc["r0047", "detail"]
    assert rejected.loc["r0047", "source_file"].endswith("part-1.parquet")
    assert rejected.loc["r0047", "source_row"] == 7
    assert json.loads(rejected.loc["r0070", "data"]) == {"id": "r0070", **tiny_row(70), "hour": None}
    written = json.loads((tmp_path / "out" / "_summary.json").read_text())
    assert (written["rows_in"], written["scored"], written["rejected"]) == (95, 92, 3)


def test_chunk_size_threads_and_worker_processes_do_not_change_results(model_dir: Path, tmp_path: Path) -> None:
    write_parquet_dataset(tmp_path / "in")
    runs = {
        "a": run([str(tmp_path / "in")], str(tmp_path / "a"), config(model_dir), chunk_size=7, workers=2),
        "b": run([str(tmp_path / "in")], str(tmp_path / "b"), config(model_dir), chunk_size=10_000),
        "c": run(
            [str(tmp_path / "in")],
            str(tmp_path / "c"),
            config(model_dir),
            chunk_size=5,
            parallelism="processes",
            workers=2,
        ),
        "d": run([str(tmp_path / "in")], str(tmp_path / "d"), config(model_dir), chunk_size=9, parallelism="processes"),
    }
    # Parquet scored as it is goes to threads by default; workers=1 with processes stays in this process.
    assert [s.parallelism for s in runs.values()] == ["threads (2)", "threads (1)", "processes (2)", "in-process"]
    for name in "bcd":
        assert (runs[name].scored, runs[name].rejected) == (runs["a"].scored, runs["a"].rejected) == (92, 3)
        for part in ("scored", "rejected"):
            pd.testing.assert_frame_equal(read_out(tmp_path / "a" / part), read_out(tmp_path / name / part))


def test_auto_parallelism_uses_processes_where_rows_are_python(model_dir: Path, tmp_path: Path) -> None:
    write_jsonl_dataset(tmp_path / "in")
    summary = run([str(tmp_path / "in")], str(tmp_path / "out"), config(model_dir), workers=2, chunk_size=8)
    assert summary.parallelism == "processes (2)"
    # Parquet whose integer column holds floats: validated row by row, so processes too.
    (tmp_path / "floats").mkdir()
    pd.DataFrame(good_rows(0, 30)).astype({"hour": "float64"}).to_parquet(tmp_path / "floats" / "a.parquet")
    floats = run([str(tmp_path / "floats")], str(tmp_path / "out-f"), config(model_dir), workers=2, chunk_size=8)
    assert (floats.parallelism, floats.scored) == ("processes (2)", 30)
    with pytest.raises(BatchJobError, match="parallelism 'fibers'"):
        run([str(tmp_path / "in")], str(tmp_path / "out2"), config(model_dir), parallelism="fibers")


def test_json_lines_with_features_field_and_undecodable_lines(model_dir: Path, tmp_path: Path) -> None:
    bad = write_jsonl_dataset(tmp_path / "in")
    cfg = config(model_dir, FEATURES_FIELD="features")
    summary = run([str(tmp_path / "in" / "*.jsonl")], str(tmp_path / "out"), cfg, chunk_size=4)

    assert (summary.rows_in, summary.scored, summary.rejected) == (30, 25, 5)
    assert summary.reasons == {"schema_violation": 2, "missing_features_field": 1, "not_json": 1, "not_object": 1}
    rejected = read_out(tmp_path / "out" / "rejected")
    by_id = dict(zip(rejected["id"].dropna(), rejected.dropna(subset=["id"])["reason"], strict=True))
    assert by_id == bad
    not_json = rejected[rejected["reason"] == "not_json"].iloc[0]
    assert (not_json["data"], not_json["source_row"]) == ("{not json", 3)  # zero-based line number in b.jsonl
    scored = read_out(tmp_path / "out" / "scored")
    expected = expected_predictions(model_dir, good_rows(0, 25))
    assert dict(zip(scored["id"], scored["prediction"], strict=True)) == pytest.approx(expected, rel=1e-12)


def test_csv_cells_become_numbers_and_a_stray_word_rejects_only_its_row(model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    rows = good_rows(0, 12)
    frame = pd.DataFrame(rows).astype({"distance": object, "hour": object})
    frame.loc[4, "distance"] = "far"
    frame.loc[9, "hour"] = None
    frame.iloc[:6].to_csv(tmp_path / "in" / "a.csv", index=False)
    frame.iloc[6:].to_csv(tmp_path / "in" / "b.csv", index=False)
    summary = run([str(tmp_path / "in")], str(tmp_path / "out"), config(model_dir), chunk_size=5)

    assert (summary.scored, summary.rejected) == (10, 2)
    rejected = read_out(tmp_path / "out" / "rejected").set_index("id")
    assert "field 'distance' must be a finite number, got string" in rejected.loc["r0004", "detail"]
    assert "missing required field 'hour'" in rejected.loc["r0009", "detail"]
    scored = read_out(tmp_path / "out" / "scored")
    expected = expected_predictions(model_dir, [r for r in rows if r["id"] not in ("r0004", "r0009")])
    assert dict(zip(scored["id"], scored["prediction"], strict=True)) == pytest.approx(expected, rel=1e-12)


def raw_features(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A feature hook for the test: raw trips (miles as text) to the tiny model's columns."""
    return [{"zone": r["area"], "distance": float(r["miles"]), "hour": int(r["hour"])} for r in rows]


def test_raw_columns_through_a_feature_hook(model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    raw = [{"id": r["id"], "area": r["zone"], "miles": str(r["distance"]), "hour": r["hour"]} for r in good_rows(0, 9)]
    raw[2]["miles"] = "n/a"  # the hook raises on this row only
    pd.DataFrame(raw).to_parquet(tmp_path / "in" / "raw.parquet")
    cfg = config(model_dir, FEATURE_HOOK="tests.unit.test_batch:raw_features")
    summary = run([str(tmp_path / "in")], str(tmp_path / "out"), cfg)

    assert (summary.scored, summary.rejected, summary.reasons) == (8, 1, {"hook_error": 1})
    rejected = read_out(tmp_path / "out" / "rejected")
    assert rejected["id"].tolist() == ["r0002"] and "ValueError" in rejected["detail"][0]
    scored = read_out(tmp_path / "out" / "scored")
    expected = expected_predictions(model_dir, [r for r in good_rows(0, 9) if r["id"] != "r0002"])
    assert dict(zip(scored["id"], scored["prediction"], strict=True)) == pytest.approx(expected, rel=1e-12)


def test_output_parts_roll_and_formats(model_dir: Path, tmp_path: Path) -> None:
    write_parquet_dataset(tmp_path / "in")
    summary = run(
        [str(tmp_path / "in")],
        str(tmp_path / "out"),
        config(model_dir),
        output_format="jsonl",
        rows_per_file=50,
    )
    parts = sorted((tmp_path / "out" / "scored").glob("part-*.jsonl"))
    assert [p.name for p in parts] == ["part-00000.jsonl", "part-00001.jsonl"]
    lines = [json.loads(x) for p in parts for x in p.read_text().splitlines()]
    assert len(lines) == summary.scored == 92
    assert set(lines[0]) == {
        "id",
        "prediction",
        "model_name",
        "model_version",
        "model_sha256",
        "source_file",
        "source_row",
    }


def test_refuses_to_mix_runs_unless_overwrite(model_dir: Path, tmp_path: Path) -> None:
    write_parquet_dataset(tmp_path / "in")
    args = ([str(tmp_path / "in")], str(tmp_path / "out"), config(model_dir))
    run(*args)
    with pytest.raises(BatchJobError, match="not empty"):
        run(*args)
    (tmp_path / "out" / "README.txt").write_text("kept")  # overwrite replaces only what a run writes
    (tmp_path / "out" / "scored" / "part-00099.parquet").write_text("stale part")
    assert run(*args, overwrite=True).scored == 92
    assert (tmp_path / "out" / "README.txt").read_text() == "kept"
    assert [p.name for p in (tmp_path / "out" / "scored").iterdir()] == ["part-00000.parquet"]


def test_configuration_errors_fail_before_scoring(model_dir: Path, tmp_path: Path) -> None:
    write_parquet_dataset(tmp_path / "in")
    with pytest.raises(BatchJobError, match="FEATURES_FIELD='ride'"):
        run([str(tmp_path / "in")], str(tmp_path / "o1"), config(model_dir, FEATURES_FIELD="ride"))
    with pytest.raises(BatchJobError, match="matches no data file"):
        run([str(tmp_path / "nothing-*.parquet")], str(tmp_path / "o2"), config(model_dir))
    (tmp_path / "in" / "part-3.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(BatchJobError, match=r"cannot read .*part-3.parquet as parquet"):
        run([str(tmp_path / "in")], str(tmp_path / "o3"), config(model_dir))
    assert not (tmp_path / "o1" / "scored").exists()


def broken_predict(frame: Any) -> Any:
    raise RuntimeError("model server gone")


def test_a_model_failing_on_every_row_fails_the_job(model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    write_parquet_dataset(tmp_path / "in")
    monkeypatch.setattr(type(tiny_pipeline()), "predict", lambda self, x: broken_predict(x))
    with pytest.raises(BatchJobError, match="model fails on every row"):
        run([str(tmp_path / "in")], str(tmp_path / "out"), config(model_dir))


def test_cli_end_to_end(model_dir: Path, tmp_path: Path, capsys) -> None:
    from tests.helpers import run_cli

    write_jsonl_dataset(tmp_path / "in")
    release = tmp_path / "release.json"
    release.write_text(json.dumps({"sha256": None, "features_field": "features", "id_field": "id"}))
    argv = [str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--release", str(release)]
    assert run_cli(["batch", *argv, "--model", str(model_dir), "--no-progress", "--workers", "1"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (last["rows_in"], last["scored"], last["rejected"]) == (30, 25, 5)
    assert run_cli(["batch", *argv, "--model", "relative/path"]) == 2
    assert "MODEL_URI" in capsys.readouterr().err
    assert run_cli(["batch", *argv, "--model", str(model_dir), "--no-progress"]) == 1  # output exists
    assert "--overwrite" in capsys.readouterr().err


def test_prediction_type_is_inferred_from_the_model(model_dir: Path, tmp_path: Path) -> None:
    write_parquet_dataset(tmp_path / "in")
    summary = run([str(tmp_path / "in")], str(tmp_path / "out"), config(model_dir))
    assert summary.prediction_type == "double"
    assert pq.read_schema(next((tmp_path / "out" / "scored").glob("*.parquet"))).field("prediction").type == "double"
    assert np.isfinite(read_out(tmp_path / "out" / "scored")["prediction"]).all()


@pytest.mark.parametrize(
    ("labels", "kind", "arrow_type"),
    [(["short", "long"], "string", "string"), ([0, 1], "long", "int64"), ([False, True], "boolean", "bool")],
)
def test_classifier_labels_keep_their_type(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, labels: list[Any], kind: str, arrow_type: str
) -> None:
    """The type is learned from the model's own values, not from an output column of a default type."""
    monkeypatch.setattr(
        type(tiny_pipeline()), "predict", lambda self, x: np.array([labels[int(d) % 2] for d in x["distance"]])
    )
    write_parquet_dataset(tmp_path / "in")
    summary = run([str(tmp_path / "in")], str(tmp_path / "out"), config(model_dir))
    assert (summary.prediction_type, summary.scored) == (kind, 92)
    scored = pq.read_table(tmp_path / "out" / "scored")
    assert str(scored.schema.field("prediction").type) == arrow_type
    assert set(scored.column("prediction").to_pylist()) == set(labels)
