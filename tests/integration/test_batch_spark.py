"""Batch scoring, spark engine, on a real local Spark session: identical results to the local engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from servingkit.batch import JobConfig, model_env, run_local
from tests.helpers import save_mlflow_model, tiny_pipeline
from tests.unit.test_batch import write_jsonl_dataset, write_parquet_dataset

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from servingkit.batch.spark import session

    s = session("local[2]", chunk_size=16)
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_mlflow_model(tmp_path_factory.mktemp("spark-model") / "model", tiny_pipeline())


def both(spark: Any, inputs: list[str], out: Path, cfg: JobConfig) -> tuple[Any, Any]:
    from servingkit.batch.spark import run_spark

    local = run_local(inputs, str(out / "local"), cfg, chunk_size=8, progress=False)
    distributed = run_spark(inputs, str(out / "spark"), cfg, spark=spark)
    return local, distributed


def table(path: Path, key: list[str]) -> pd.DataFrame:
    return pq.read_table(path).to_pandas().sort_values(key).reset_index(drop=True)


def test_parquet_dataset_same_predictions_and_rejections(spark: Any, model_dir: Path, tmp_path: Path) -> None:
    bad = write_parquet_dataset(tmp_path / "in")
    cfg = JobConfig(model_env(MODEL_URI=str(model_dir), ID_FIELD="id"))
    local, distributed = both(spark, [str(tmp_path / "in")], tmp_path, cfg)

    assert (distributed.inputs, distributed.rows_in, distributed.scored, distributed.rejected) == (3, 95, 92, 3)
    assert distributed.reasons == local.reasons == {"schema_violation": 3}
    assert distributed.model == local.model
    a = table(tmp_path / "local" / "scored", ["id"])
    b = table(tmp_path / "spark" / "scored", ["id"])
    assert len(a) == 92
    pd.testing.assert_frame_equal(a, b, check_exact=True)  # same predictions, ids, model and source rows
    ra = table(tmp_path / "local" / "rejected", ["id"])
    rb = table(tmp_path / "spark" / "rejected", ["id"])
    pd.testing.assert_frame_equal(ra, rb)
    assert dict(zip(rb["id"], rb["reason"], strict=True)) == bad


def test_json_lines_nested_features_same_results(spark: Any, model_dir: Path, tmp_path: Path) -> None:
    write_jsonl_dataset(tmp_path / "in")
    cfg = JobConfig(model_env(MODEL_URI=str(model_dir), ID_FIELD="id", FEATURES_FIELD="features"))
    local, distributed = both(spark, [str(tmp_path / "in")], tmp_path, cfg)

    assert (distributed.rows_in, distributed.scored, distributed.rejected) == (30, 25, 5)
    assert distributed.reasons == local.reasons
    cols = ["id", "prediction", "model_sha256", "source_file"]
    a = table(tmp_path / "local" / "scored", ["id"])[cols]
    b = table(tmp_path / "spark" / "scored", ["id"])[cols]
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    # Spark's text reader has no line numbers; everything else about a rejected line is the same.
    cols = ["source_file", "id", "reason", "detail", "data"]
    ra = table(tmp_path / "local" / "rejected", ["data"])[cols]
    rb = table(tmp_path / "spark" / "rejected", ["data"])[cols]
    pd.testing.assert_frame_equal(ra, rb)


def test_csv_dataset_same_results(spark: Any, model_dir: Path, tmp_path: Path) -> None:
    from tests.unit.test_batch import good_rows

    (tmp_path / "in").mkdir()
    frame = pd.DataFrame(good_rows(0, 30)).astype({"distance": object, "hour": object})
    frame.loc[4, "distance"] = "far"
    frame.loc[21, "hour"] = None
    frame.iloc[:15].to_csv(tmp_path / "in" / "a.csv", index=False)
    frame.iloc[15:].to_csv(tmp_path / "in" / "b.csv", index=False)
    cfg = JobConfig(model_env(MODEL_URI=str(model_dir), ID_FIELD="id"))
    local, distributed = both(spark, [str(tmp_path / "in")], tmp_path, cfg)

    assert (distributed.scored, distributed.rejected) == (local.scored, local.rejected) == (28, 2)
    cols = ["id", "prediction", "source_file"]
    a = table(tmp_path / "local" / "scored", ["id"])[cols]
    b = table(tmp_path / "spark" / "scored", ["id"])[cols]
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    cols = ["id", "reason", "detail", "data"]
    pd.testing.assert_frame_equal(
        table(tmp_path / "local" / "rejected", ["id"])[cols], table(tmp_path / "spark" / "rejected", ["id"])[cols]
    )
