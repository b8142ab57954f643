"""Train the demo ride-duration model, log it to MLflow with its signature, export it for S3.

Offline and deterministic: generated rides, fixed seeds. The MLflow store is local (SQLite tracking,
artifacts beside it) unless MLFLOW_TRACKING_URI says otherwise. The export is an MLflow model
directory saved with skops (the safe format), plus `release.json` with its sha256. The export holds the
monitoring reference too, `reference.json` (`lambda_fn.monitoring.reference`: the training frame's bins and the
model's predictions on it), so the model's digest covers it and `servingkit publish` pins it in the release;
the same file is logged to the MLflow run (`monitoring/reference.json`) for publishing from the registry.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lambda_fn.hooks import taxi_features
from lambda_fn.model_store import artifact_sha256
from lambda_fn.monitoring.quality_job import METRICS_FILE, metrics_file
from lambda_fn.monitoring.reference import Reference
from lambda_fn.monitoring.release_reference import REFERENCE_FILE, sha256_hex
from servingkit.taxi import rides
from servingkit.tracking import resolve_tracking_uri

MODEL_NAME = "taxi-ride-duration"
DEFAULT_EXPORT = Path("build/model")
FEATURE_HOOK = "lambda_fn.hooks:taxi_features"
FEATURES_FIELD = "ride"
ID_FIELD = "ride_id"
HGB_TREE_TYPE = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
RUN_REFERENCE_DIR = "monitoring"  # the reference's folder among the MLflow run's artifacts


class MissingModelError(FileNotFoundError):
    """The demo model has not been trained yet."""


def demo_artifact(root: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """The exported demo model directory and its release manifest, or a clear error saying how to make them."""
    base = (root or Path(__file__).resolve().parents[1]) / DEFAULT_EXPORT
    release_path = base.parent / "release.json"
    if not (base / "MLmodel").is_file() or not release_path.is_file():
        raise MissingModelError(f"{base} is missing: run `make model` (servingkit train) first")
    release: dict[str, Any] = json.loads(release_path.read_text())
    # A build trained under an older digest rule, or half rewritten, would fail later inside a child process
    # with a checksum mismatch; say here what to do instead.
    if not pins_match(base, release):
        raise MissingModelError(
            f"{base} is stale: its files do not have the sha256 {release_path} pins; "
            "run `make model` (servingkit train) again"
        )
    return base, release


def pins_match(model_dir: Path, release: dict[str, Any]) -> bool:
    """The model directory has the sha256 its release manifest pins: the one staleness rule of a build, which
    `demo_artifact` (refuses) and `servingkit demo` (retrains the default build) both apply."""
    return (model_dir / "MLmodel").is_file() and release.get("sha256") == artifact_sha256(model_dir)


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_uri: str
    registered_version: str | None
    export_dir: Path
    sha256: str
    rmse: float
    baseline_rmse: float
    reference_sha256: str | None = None


def build_frame(n: int, seed: int) -> tuple[Any, np.ndarray]:
    import pandas as pd

    cols = rides(n, seed)
    raw = [
        {
            "PULocationID": int(pu),
            "DOLocationID": int(do),
            "trip_distance": float(d),
            "pickup_datetime": str(t),
        }
        for pu, do, d, t in zip(
            cols["PULocationID"], cols["DOLocationID"], cols["trip_distance"], cols["pickup_datetime"], strict=True
        )
    ]
    frame = pd.DataFrame(taxi_features(raw))
    frame["pickup_hour"] = frame["pickup_hour"].astype("int64")
    frame["pickup_dow"] = frame["pickup_dow"].astype("int64")
    return frame, cols["duration"]


def reference_json(frame: Any, predictions: Any, meta: dict[str, str]) -> bytes:
    """The monitoring reference of a training frame and the model's predictions on it, as canonical JSON (what
    `reference.json` holds: the file's sha256 is the reference's own)."""
    return Reference.build(frame, np.asarray(predictions, dtype=np.float64), meta=meta).to_json()


def make_pipeline(seed: int = 0) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import TargetEncoder

    features = ColumnTransformer(
        [
            ("route", TargetEncoder(target_type="continuous", cv=5), ["PU_DO"]),
            ("numeric", "passthrough", ["trip_distance", "pickup_hour", "pickup_dow"]),
        ]
    )
    model = HistGradientBoostingRegressor(max_iter=150, learning_rate=0.1, max_leaf_nodes=31, random_state=seed)
    return Pipeline([("features", features), ("model", model)])


def train(
    *,
    rows: int = 60_000,
    seed: int = 42,
    tracking_uri: str | None = None,
    export_dir: Path = DEFAULT_EXPORT,
    register: bool = True,
) -> TrainResult:
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="mlflow")
    mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri))
    mlflow.set_experiment("taxi-ride-duration")

    frame, target = build_frame(rows, seed)
    cut = int(len(frame) * 0.8)
    x_train, x_test = frame.iloc[:cut], frame.iloc[cut:]
    y_train, y_test = target[:cut], target[cut:]
    pipeline = make_pipeline()
    np.random.seed(seed)  # TargetEncoder's shuffled cross-fitting draws from the global generator
    pipeline.fit(x_train, y_train)
    pred = pipeline.predict(x_test)
    rmse = float(np.sqrt(np.mean((pred - y_test) ** 2)))
    mae = float(np.mean(np.abs(pred - y_test)))
    baseline = float(np.sqrt(np.mean((y_train.mean() - y_test) ** 2)))
    signature = infer_signature(x_test.head(100), pred[:100])
    reference = reference_json(x_train, pipeline.predict(x_train), {"name": MODEL_NAME})

    with mlflow.start_run(run_name="train-demo") as run:
        mlflow.log_params({"rows": rows, "seed": seed, "max_iter": 150, "encoder": "TargetEncoder(PU_DO)"})
        mlflow.log_metrics({"mae": mae, "rmse": rmse, "baseline_rmse": baseline})
        mlflow.log_text(reference.decode("ascii"), f"{RUN_REFERENCE_DIR}/{REFERENCE_FILE}")
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=signature,
            input_example=x_test.head(3),
            serialization_format="skops",
            # Reviewed: HGB's tree nodes; safe for a file we made, and the artifact is pinned by sha256.
            skops_trusted_types=[HGB_TREE_TYPE],
            registered_model_name=MODEL_NAME if register else None,
            metadata={"name": MODEL_NAME},
        )
    version = str(info.registered_model_version) if register and info.registered_model_version else None

    if export_dir.exists():
        shutil.rmtree(export_dir)
    export_dir.parent.mkdir(parents=True, exist_ok=True)
    mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=str(export_dir.parent / ".export"))
    shutil.move(str(export_dir.parent / ".export"), export_dir)
    (export_dir / REFERENCE_FILE).write_bytes(reference)
    metrics = {"mae": mae, "rmse": rmse, "baseline_rmse": baseline}  # the validation split's
    (export_dir / METRICS_FILE).write_bytes(metrics_file(metrics, len(x_test)))
    ref_sha = sha256_hex(reference)
    sha = artifact_sha256(export_dir)
    release = {
        "name": MODEL_NAME,
        "version": version or run.info.run_id[:12],
        "sha256": sha,
        "source": info.model_uri,
        "run_id": run.info.run_id,
        "signature": json.loads(json.dumps(signature.to_dict())),
        "metrics": metrics,
        "reference": {"path": f"{export_dir.name}/{REFERENCE_FILE}", "sha256": ref_sha, "rows": len(x_train)},
        "feature_hook": FEATURE_HOOK,
        "features_field": FEATURES_FIELD,
        "id_field": ID_FIELD,
    }
    (export_dir.parent / "release.json").write_text(json.dumps(release, indent=2) + "\n")
    return TrainResult(run.info.run_id, info.model_uri, version, export_dir, sha, rmse, baseline, ref_sha)
