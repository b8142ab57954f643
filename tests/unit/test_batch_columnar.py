"""The batch engine's Arrow fast path gives exactly the row path's results, and is really taken.

`ChunkScorer.score_arrow` checks Parquet columns as a whole; every case here is compared with
`ChunkScorer.score(arrow_rows(batch))`, the path the stream and the API share.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import servingkit.batch.decode as batch_decode
from servingkit.batch import BatchJobError, ChunkScorer, JobConfig, model_env
from servingkit.batch.columnar import plan
from tests.helpers import save_mlflow_model, tiny_pipeline, tiny_row

N = 60


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_mlflow_model(tmp_path_factory.mktemp("columnar-model") / "model", tiny_pipeline())


@pytest.fixture(scope="module")
def scorer(model_dir: Path) -> ChunkScorer:
    return ChunkScorer.from_config(JobConfig(model_env(MODEL_URI=str(model_dir), ID_FIELD="id")))


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the batches turned into Python rows (the slow path) during the test."""
    sizes: list[int] = []
    real = batch_decode.arrow_rows

    def spy(batch: Any) -> list[Any]:
        sizes.append(batch.num_rows)
        return real(batch)

    monkeypatch.setattr(batch_decode, "arrow_rows", spy)
    return sizes


def columns(n: int = N) -> dict[str, Any]:
    rows = [tiny_row(i) for i in range(n)]
    return {
        "id": pa.array([f"r{i:03d}" for i in range(n)], pa.string()),
        "zone": pa.array([r["zone"] for r in rows], pa.string()),
        "distance": pa.array([r["distance"] for r in rows], pa.float64()),
        "hour": pa.array([r["hour"] for r in rows], pa.int64()),
        "extra": pa.array([True] * n),
    }


def both(scorer: ChunkScorer, batch: pa.RecordBatch, first_row: int = 100) -> tuple[Any, Any]:
    fast = scorer.score_arrow(batch, source_file="f.parquet", first_row=first_row)
    slow = scorer.score(batch_decode.arrow_rows(batch), source_file="f.parquet", first_row=first_row)
    return fast, slow


def assert_same(fast: Any, slow: Any) -> None:
    assert fast.rows == slow.rows
    assert fast.scored.schema == slow.scored.schema
    assert fast.scored.to_pylist() == slow.scored.to_pylist()
    assert fast.rejected.to_pylist() == slow.rejected.to_pylist()


def test_clean_chunk_never_becomes_python_rows(scorer: ChunkScorer, decoded: list[int]) -> None:
    batch = pa.record_batch(columns())
    fast = scorer.score_arrow(batch, source_file="f.parquet", first_row=100)
    assert decoded == []  # the fast path was taken
    assert (fast.scored.num_rows, fast.rejected.num_rows) == (N, 0)
    assert fast.scored.column("source_row").to_pylist() == list(range(100, 100 + N))
    assert set(fast.scored.column("model_sha256").to_pylist()) == {scorer.model.sha256}
    expected = scorer.model.estimator.predict(batch.to_pandas()[["zone", "distance", "hour"]])
    assert fast.scored.column("prediction").to_pylist() == expected.tolist()
    assert_same(*both(scorer, batch))


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"hour": pa.int32()}, id="int32-for-long"),
        pytest.param({"hour": pa.uint16()}, id="uint-for-long"),
        pytest.param({"distance": pa.int64()}, id="ints-for-double"),
        pytest.param({"distance": pa.float32()}, id="float32-for-double"),
        pytest.param({"zone": pa.large_string()}, id="large-string"),
        pytest.param({"id": pa.large_string()}, id="large-string-id"),
    ],
)
def test_compatible_arrow_types_take_the_fast_path(
    scorer: ChunkScorer, decoded: list[int], change: dict[str, pa.DataType]
) -> None:
    cols = columns()
    for name, typ in change.items():
        cols[name] = cols[name].cast(typ, safe=False)
    batch = pa.record_batch(cols)
    fast, slow = both(scorer, batch)
    assert decoded == [N]  # only the reference call decoded rows
    assert_same(fast, slow)


def test_integer_ids_are_text_as_in_rows(scorer: ChunkScorer, decoded: list[int]) -> None:
    cols = columns()
    cols["id"] = pa.array(np.arange(N, dtype=np.int64) * 1_000_003)
    fast, slow = both(scorer, pa.record_batch(cols))
    assert decoded == [N]
    assert fast.scored.column("id").to_pylist()[:2] == ["0", "1000003"]
    assert_same(fast, slow)


def test_without_an_id_column_ids_are_null(scorer: ChunkScorer, decoded: list[int]) -> None:
    cols = columns()
    del cols["id"]
    fast, slow = both(scorer, pa.record_batch(cols))
    assert decoded == [N]
    assert set(fast.scored.column("id").to_pylist()) == {None}
    assert_same(fast, slow)


def test_only_suspect_rows_go_through_the_row_path(scorer: ChunkScorer, decoded: list[int]) -> None:
    cols = columns()
    distance = cols["distance"].to_pylist()
    distance[3], distance[7], distance[11] = None, math.inf, math.nan
    hour = cols["hour"].to_pylist()
    hour[20] = None
    zone = cols["zone"].to_pylist()
    zone[40] = None
    cols.update(
        distance=pa.array(distance, pa.float64()), hour=pa.array(hour, pa.int64()), zone=pa.array(zone, pa.string())
    )
    batch = pa.record_batch(cols)
    fast, slow = both(scorer, batch)
    # Only the five suspects became Python rows (the second call is the reference row path).
    assert decoded == [5, N]
    assert_same(fast, slow)
    assert fast.rejected.column("source_row").to_pylist() == [103, 107, 111, 120, 140]
    assert set(fast.rejected.column("reason").to_pylist()) == {"schema_violation"}
    assert "finite" in fast.rejected.column("detail")[1].as_py()


def test_optional_nulls_that_pass_validation_are_scored_in_input_order(model_dir: Path, decoded: list[int]) -> None:
    """A suspect the row path accepts joins the clean rows in one predict call, in input order."""
    schema = (
        '[{"name": "zone", "type": "string"}, {"name": "distance", "type": "double"},'
        ' {"name": "hour", "type": "long", "required": false}]'
    )
    scorer = ChunkScorer.from_config(JobConfig(model_env(MODEL_URI=str(model_dir), ID_FIELD="id", INPUT_SCHEMA=schema)))
    assert scorer.model.signature is not None and scorer.model.signature.inputs[2].required is False
    cols = columns()
    hour = cols["hour"].to_pylist()
    hour[5] = None
    cols["hour"] = pa.array(hour, pa.int64())
    batch = pa.record_batch(cols)
    monkey_predictions: list[int] = []
    estimator = scorer.model.estimator
    real = type(estimator).predict

    def predict(self: Any, x: Any) -> Any:
        monkey_predictions.append(len(x))
        return real(self, x.fillna({"hour": 0}))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(estimator), "predict", predict)
        fast, slow = both(scorer, batch)
    assert monkey_predictions == [N, N]  # one call each, over every row
    assert fast.scored.num_rows == N
    assert_same(fast, slow)


def test_types_only_rows_can_judge_take_the_row_path(scorer: ChunkScorer, decoded: list[int]) -> None:
    cols = columns()
    cols["hour"] = cols["hour"].cast(pa.float64())  # integral floats are valid longs, judged row by row
    batch = pa.record_batch(cols)
    assert plan(batch, scorer.model.signature, strict=False) is None
    fast, slow = both(scorer, batch)
    assert decoded == [N, N]
    assert_same(fast, slow)

    cols = columns()
    cols["distance"] = pa.array([True] * N)
    assert plan(pa.record_batch(cols), scorer.model.signature, strict=False) is None
    cols = columns()
    del cols["hour"]  # a missing column: the row path names it in each row's reason
    fast, slow = both(scorer, pa.record_batch(cols))
    assert fast.rejected.num_rows == N and "hour" in fast.rejected.column("detail")[0].as_py()
    assert_same(fast, slow)


def test_strict_mode_with_extra_columns_takes_the_row_path(model_dir: Path) -> None:
    strict = ChunkScorer.from_config(JobConfig(model_env(MODEL_URI=str(model_dir)), strict=True))
    batch = pa.record_batch(columns())
    assert plan(batch, strict.model.signature, strict=True) is None
    fast, slow = both(strict, batch)
    assert fast.rejected.num_rows == N and "unknown field" in fast.rejected.column("detail")[0].as_py()
    assert_same(fast, slow)
    cols = columns()
    del cols["id"], cols["extra"]
    assert plan(pa.record_batch(cols), strict.model.signature, strict=True) is not None


def test_model_errors_on_some_rows_are_isolated_as_in_the_row_path(
    scorer: ChunkScorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    estimator = scorer.model.estimator
    real = type(estimator).predict

    def predict(self: Any, x: Any) -> Any:
        if (x["distance"] == 13.0).any():
            raise ValueError("13 is unlucky")
        return real(self, x)

    monkeypatch.setattr(type(estimator), "predict", predict)
    batch = pa.record_batch(columns())
    fast, slow = both(scorer, batch)
    unlucky = [i for i in range(N) if tiny_row(i)["distance"] == 13.0]
    assert fast.rejected.column("source_row").to_pylist() == [100 + i for i in unlucky]
    assert set(fast.rejected.column("reason").to_pylist()) == {"model_error"}
    assert_same(fast, slow)


def test_a_model_failing_everywhere_fails_the_job_on_the_fast_path(
    scorer: ChunkScorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Any, x: Any) -> Any:
        raise RuntimeError("model server gone")

    monkeypatch.setattr(type(scorer.model.estimator), "predict", broken)
    with pytest.raises(BatchJobError, match=r"f\.parquet: model fails on every row"):
        scorer.score_arrow(pa.record_batch(columns()), source_file="f.parquet")
