"""The demo model: trained offline, logged to a local MLflow store, exported and served by the core."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lambda_fn.config import settings_from
from lambda_fn.hooks import taxi_features
from lambda_fn.model_store import artifact_sha256, load_model
from lambda_fn.scoring import score_batch
from servingkit.taxi import ride_events
from servingkit.train import MODEL_NAME, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("train")
    result = train(rows=4000, tracking_uri=f"sqlite:///{root}/mlruns.db", export_dir=root / "model")
    return root, result


def test_export_is_an_mlflow_skops_model_with_signature_and_release(trained: tuple[Path, object]) -> None:
    root, result = trained
    release = json.loads((root / "release.json").read_text())
    assert release["name"] == MODEL_NAME
    assert release["sha256"] == artifact_sha256(root / "model")
    assert release["version"] == "1"
    names = [c["name"] for c in json.loads(release["signature"]["inputs"])]
    assert names == ["PU_DO", "trip_distance", "pickup_hour", "pickup_dow"]
    assert result.rmse < 0.6 * result.baseline_rmse  # type: ignore[attr-defined]
    assert (root / "model" / "model.skops").exists()


def test_the_core_serves_it_with_the_hook_without_mlflow(trained: tuple[Path, object]) -> None:
    root, _ = trained
    release = json.loads((root / "release.json").read_text())
    model = load_model(settings_from({"MODEL_URI": str(root / "model"), "MODEL_SHA256": release["sha256"]}))
    assert model.format == "mlflow-sklearn-skops" and model.name == MODEL_NAME
    rides = [e["ride"] for e in ride_events(200, seed=5)]
    out = score_batch(rides, model, taxi_features)
    assert out.errors == {}
    assert all(1.0 < p < 300.0 for p in out.predictions)


def test_training_is_deterministic(trained: tuple[Path, object], tmp_path: Path) -> None:
    root, _ = trained
    again = train(
        rows=4000, tracking_uri=f"sqlite:///{tmp_path}/mlruns.db", export_dir=tmp_path / "model", register=False
    )
    a = load_model(
        settings_from(
            {
                "MODEL_URI": str(root / "model"),
                "ALLOW_UNPINNED_PICKLE": "false",
                "MODEL_SHA256": artifact_sha256(root / "model"),
            }
        )
    )
    b = load_model(settings_from({"MODEL_URI": str(again.export_dir), "MODEL_SHA256": again.sha256}))
    rides = [e["ride"] for e in ride_events(100, seed=9)]
    assert score_batch(rides, a, taxi_features).predictions == score_batch(rides, b, taxi_features).predictions


def test_train_writes_the_monitoring_reference_into_the_model_and_the_run(trained: tuple[Path, object]) -> None:
    import mlflow.artifacts

    from lambda_fn.monitoring.release_reference import load_reference

    root, result = trained
    release = json.loads((root / "release.json").read_text())
    entry = release["reference"]
    assert entry["path"] == "model/reference.json" and entry["rows"] == 3200  # the 80% training split
    assert entry["sha256"] == result.reference_sha256  # type: ignore[attr-defined]
    ref = load_reference(str(root / "model" / "reference.json"), entry["sha256"])
    assert [f.name for f in ref.features] == ["PU_DO", "trip_distance", "pickup_hour", "pickup_dow"]
    assert [f.kind for f in ref.features] == ["string", "number", "number", "number"]
    assert ref.meta == {"name": MODEL_NAME} and ref.prediction.kind == "number"
    assert release["sha256"] == artifact_sha256(root / "model")  # the model's digest covers the reference
    logged = mlflow.artifacts.download_artifacts(
        artifact_uri=f"runs:/{result.run_id}/monitoring/reference.json",  # type: ignore[attr-defined]
        tracking_uri=f"sqlite:///{root}/mlruns.db",
    )
    assert Path(logged).read_bytes() == (root / "model" / "reference.json").read_bytes()


def test_train_records_the_validation_metrics_in_the_model_the_release_and_the_run(
    trained: tuple[Path, object], tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    from lambda_fn.monitoring.quality_job import read_metrics_file
    from servingkit.publish import training_metrics

    root, result = trained
    release = json.loads((root / "release.json").read_text())
    assert set(release["metrics"]) == {"mae", "rmse", "baseline_rmse"}
    assert 0 < release["metrics"]["mae"] <= release["metrics"]["rmse"]
    in_model = read_metrics_file((root / "model" / "metrics.json").read_bytes())
    assert in_model == {"mae": release["metrics"]["mae"], "rmse": release["metrics"]["rmse"]}
    assert json.loads((root / "model" / "metrics.json").read_text())["rows"] == 800  # the 20 % validation split
    assert release["sha256"] == artifact_sha256(root / "model")  # the model's digest covers the metrics
    assert training_metrics(root / "model", None, False, None) == (in_model, "the model directory (metrics.json)")
    run = MlflowClient(tracking_uri=f"sqlite:///{root}/mlruns.db").get_run(result.run_id)  # type: ignore[attr-defined]
    assert run.data.metrics["mae"] == pytest.approx(release["metrics"]["mae"])
    (tmp_path / "plain").mkdir()
    assert training_metrics(tmp_path / "plain", None, False, None) == (None, None)
