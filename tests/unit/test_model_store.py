from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lambda_fn.config import settings_from
from lambda_fn.model_store import (
    ChecksumMismatchError,
    ModelLoadError,
    ModelNotFoundError,
    artifact_sha256,
    load_model,
)
from tests.helpers import save_joblib, save_mlflow_model, save_skops, tiny_frame, tiny_pipeline


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    model = tiny_pipeline()
    return {
        "mlflow": save_mlflow_model(root / "mlflow", model),
        "mlflow_pickle": save_mlflow_model(root / "mlflow_pickle", model, serialization_format="cloudpickle"),
        "skops": save_skops(root / "m.skops", model),
        "joblib": save_joblib(root / "m.joblib", model),
    }


def _load(path: Path, **env: str):  # type: ignore[no-untyped-def]
    return load_model(settings_from({"MODEL_URI": str(path), **env}))


def test_mlflow_directory_loads_with_signature_without_importing_mlflow(artifacts: dict[str, Path]) -> None:
    m = _load(artifacts["mlflow"])
    assert m.format == "mlflow-sklearn-skops"
    assert m.name == "tiny"
    assert m.signature is not None and m.signature.names == ["zone", "distance", "hour"]
    x, _ = tiny_frame(5)
    preds = m.predict(x)
    assert len(preds) == 5 and all(isinstance(p, float) for p in preds)
    assert m.sha256 == artifact_sha256(artifacts["mlflow"])


def test_directory_checksum_is_order_independent_and_content_sensitive(tmp_path: Path) -> None:
    (tmp_path / "b").write_text("2")
    (tmp_path / "a").write_text("1")
    first = artifact_sha256(tmp_path)
    assert first == artifact_sha256(tmp_path)
    (tmp_path / "a").write_text("changed")
    assert artifact_sha256(tmp_path) != first


def test_checksum_mismatch_refuses_to_load(artifacts: dict[str, Path]) -> None:
    with pytest.raises(ChecksumMismatchError, match="nothing will be scored"):
        _load(artifacts["skops"], MODEL_SHA256="0" * 64)


def test_skops_file_loads_without_a_pin(artifacts: dict[str, Path]) -> None:
    m = _load(artifacts["skops"])
    assert m.format == "skops" and m.name == "m"
    x, _ = tiny_frame(3)
    assert len(m.predict(x)) == 3


def test_pickle_needs_a_pin_or_an_explicit_opt_in(artifacts: dict[str, Path]) -> None:
    with pytest.raises(ModelLoadError, match="MODEL_SHA256"):
        _load(artifacts["joblib"])
    with pytest.raises(ModelLoadError, match="MODEL_SHA256"):
        _load(artifacts["mlflow_pickle"])
    sha = artifact_sha256(artifacts["joblib"])
    assert _load(artifacts["joblib"], MODEL_SHA256=sha).format == "joblib"
    assert _load(artifacts["joblib"], ALLOW_UNPINNED_PICKLE="true").format == "joblib"
    pinned = _load(artifacts["mlflow_pickle"], MODEL_SHA256=artifact_sha256(artifacts["mlflow_pickle"]))
    assert pinned.format == "mlflow-sklearn-cloudpickle"


def test_untrusted_skops_types_are_refused_unless_reviewed(tmp_path: Path) -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    x, y = tiny_frame(50)
    hgb = HistGradientBoostingRegressor(max_iter=5).fit(x[["distance", "hour"]], y)
    path = save_skops(tmp_path / "hgb.skops", hgb)
    with pytest.raises(ModelLoadError, match="MODEL_TRUSTED_TYPES"):
        _load(path)
    tree = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
    m = _load(path, MODEL_TRUSTED_TYPES=tree)
    assert len(m.predict(pd.DataFrame({"distance": [1.0], "hour": [3]}))) == 1


def test_unreadable_and_missing_artifacts_give_clear_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.skops"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ModelLoadError, match="not a readable skops file"):
        _load(junk)
    other = tmp_path / "model.onnx"
    other.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="unsupported model file"):
        _load(other)
    with pytest.raises(ModelNotFoundError):
        _load(tmp_path / "absent.skops")
    empty = tmp_path / "dir"
    empty.mkdir()
    (empty / "file.txt").write_text("x")
    with pytest.raises(ModelLoadError, match="without an MLmodel"):
        _load(empty)


def test_declared_input_schema_replaces_the_signature(artifacts: dict[str, Path]) -> None:
    schema = (
        '[{"name": "zone", "type": "string"}, {"name": "distance", "type": "double"}, {"name": "hour", "type": "long"}]'
    )
    m = _load(artifacts["skops"], INPUT_SCHEMA=schema)
    assert m.signature is not None and m.signature.names == ["zone", "distance", "hour"]


def test_a_model_that_cannot_score_its_own_input_example_fails_to_load(tmp_path: Path) -> None:
    import json

    path = save_mlflow_model(tmp_path / "m")
    assert not (path / "input_example.json").exists()  # save_mlflow_model writes none: add one the model cannot use
    (path / "input_example.json").write_text(json.dumps({"columns": ["zone"], "data": [["a"]]}))
    with pytest.raises(ModelLoadError, match="cannot score its own input example"):
        _load(path)


def test_the_input_example_becomes_the_models_reference_row(tmp_path: Path) -> None:
    """From the first request on, the scorer can tell poison rows from a broken model (lambda_fn.scoring)."""
    import json

    from lambda_fn.scoring import score_batch

    path = save_mlflow_model(tmp_path / "m")
    (path / "input_example.json").write_text(
        json.dumps({"columns": ["zone", "distance", "hour"], "data": [["a", 2.0, 8]]})
    )
    model = _load(path)
    poison = [{"zone": "a", "distance": 1.0, "hour": 1}] * 8
    model.estimator = _ScoresOnlyTheExample(model.estimator)  # a row built from the signature fails too
    result = score_batch(poison, model)  # every row fails, the example still scores: poison, not a fault
    assert len(result.errors) == 8 and {e.reason for e in result.errors.values()} == {"model_error"}


class _ScoresOnlyTheExample:
    def __init__(self, inner: object) -> None:
        self.inner = inner

    def predict(self, x: pd.DataFrame) -> object:
        if (x["distance"] != 2.0).any():
            raise ValueError("poison")
        return self.inner.predict(x)  # type: ignore[attr-defined]


def test_registered_model_meta_is_not_content_and_is_never_opened(tmp_path: Path) -> None:
    """MLflow writes it on download (how the model was referenced): the digest and the loader both ignore it."""
    from lambda_fn.model_artifact import Artifact, artifact_sha256

    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    (tmp_path / "model.skops").write_bytes(b"weights")
    bare = artifact_sha256(tmp_path)
    (tmp_path / "registered_model_meta").write_text("model_name: m\nmodel_version: '1'\n")
    assert artifact_sha256(tmp_path) == bare
    artifact = Artifact.verify(tmp_path)
    assert artifact.file("registered_model_meta", "test") is None  # outside the verified manifest
    assert artifact.file("model.skops", "test") == tmp_path / "model.skops"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "registered_model_meta").write_text("x")  # only the top-level file is MLflow's
    assert artifact_sha256(tmp_path) != bare
