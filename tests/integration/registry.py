"""A real local MLflow registry (SQLite) holding two versions of a tiny model, for the publish and release tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import tiny_frame, tiny_pipeline


@dataclass(frozen=True)
class Registry:
    uri: str  # the tracking and registry URI (sqlite:///...)
    run_ids: list[str]  # the runs of versions 1 and 2
    root: Path


@contextmanager
def two_versions(root: Path, name: str, *, release_inputs: bool = False) -> Iterator[Registry]:
    """Versions 1 and 2 of `name` (different coefficients), the champion alias on version 1, MLflow's tracking URI
    pointed at it until the block ends. `release_inputs`: each run also logs what publish records beside the model
    (training metrics, an input example for the smoke test, the model's name in its metadata)."""
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    uri = f"sqlite:///{root}/mlflow.db"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment(name, artifact_location=(root / "artifacts").as_uri())
        x, y = tiny_frame()
        extras = {"input_example": x.head(3), "metadata": {"name": name}} if release_inputs else {}
        run_ids = []
        for model in (tiny_pipeline(), tiny_pipeline().set_params(model__fit_intercept=False).fit(x, y)):
            with mlflow.start_run(experiment_id=experiment) as run:
                if release_inputs:
                    mlflow.log_metrics({"mae": 0.25, "rmse": 0.5, "baseline_rmse": 2.0})
                mlflow.sklearn.log_model(
                    model,
                    name="model",
                    signature=infer_signature(x.head(20), model.predict(x.head(20))),
                    serialization_format="skops",
                    pip_requirements=["scikit-learn", "skops"],  # skips MLflow's slow requirement inference
                    registered_model_name=name,
                    **extras,
                )
            run_ids.append(run.info.run_id)
        MlflowClient(uri, uri).set_registered_model_alias(name, "champion", "1")
        yield Registry(uri, run_ids, root)
    finally:
        mlflow.set_tracking_uri(previous)
