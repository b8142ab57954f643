"""The sha256 pin covers what is loaded: no path in an artifact reaches outside it (local model dirs).

Loading a pickle runs code, so each test plants a pickle that would leave a marker file if it were ever
unpickled, points the artifact at it by a path the digest would not cover, and checks both the refusal
and that the marker was never written.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
import yaml

from lambda_fn.config import settings_from
from lambda_fn.model_artifact import member_path
from lambda_fn.model_store import (
    ModelLoadError,
    UnsafeArtifactError,
    artifact_sha256,
    load_model,
)
from tests.helpers import save_mlflow_model, tiny_pipeline


def leave_marker(path: str) -> None:
    """What the planted pickle runs when it is loaded."""
    Path(path).write_text("unpickled")


class Planted:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return leave_marker, (str(self.marker),)


@pytest.fixture(scope="module")
def pickled_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_mlflow_model(tmp_path_factory.mktemp("src") / "model", tiny_pipeline(), serialization_format="pickle")


def _copy(src: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(src, dest)
    return dest


def _plant(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(Planted(marker)))
    return path


def _edit_mlmodel(model: Path, **sklearn: Any) -> None:
    doc = yaml.safe_load((model / "MLmodel").read_text())
    doc["flavors"]["sklearn"].update(sklearn)
    (model / "MLmodel").write_text(yaml.safe_dump(doc))


def _load_pinned(model: Path) -> Any:
    return load_model(settings_from({"MODEL_URI": str(model), "MODEL_SHA256": artifact_sha256(model)}))


@pytest.mark.parametrize("name", ["/ABS", "../outside.pkl", "sub/../../outside.pkl", "~/x.pkl"])
def test_an_mlmodel_naming_a_model_file_outside_the_directory_is_refused_unloaded(
    pickled_dir: Path, tmp_path: Path, name: str
) -> None:
    marker = tmp_path / "marker"
    model = _copy(pickled_dir, tmp_path / "art" / "model")
    outside = _plant(tmp_path / "art" / "outside.pkl", marker)
    _edit_mlmodel(model, pickled_model=str(outside) if name == "/ABS" else name)
    with pytest.raises(UnsafeArtifactError, match="outside the model directory"):
        _load_pinned(model)
    assert not marker.exists()


def test_a_model_file_reached_through_a_symlinked_folder_is_refused_unloaded(pickled_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    model = _copy(pickled_dir, tmp_path / "model")
    _plant(tmp_path / "elsewhere" / "evil.pkl", marker)
    (model / "sub").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    _edit_mlmodel(model, pickled_model="sub/evil.pkl")
    with pytest.raises(UnsafeArtifactError, match="symlink, sub"):
        artifact_sha256(model)  # nobody can pin such a directory...
    with pytest.raises(UnsafeArtifactError, match="symlink"):
        load_model(settings_from({"MODEL_URI": str(model), "MODEL_SHA256": "0" * 64}))  # ...nor load it
    assert not marker.exists()


def test_a_symlinked_file_or_a_special_file_inside_an_artifact_is_refused(pickled_dir: Path, tmp_path: Path) -> None:
    import os

    model = _copy(pickled_dir, tmp_path / "model")
    (model / "model.pkl").rename(tmp_path / "real.pkl")
    (model / "model.pkl").symlink_to(tmp_path / "real.pkl")
    with pytest.raises(UnsafeArtifactError, match=r"symlink, model\.pkl"):
        artifact_sha256(model)
    (model / "model.pkl").unlink()
    os.mkfifo(model / "model.pkl")
    with pytest.raises(UnsafeArtifactError, match="not a regular file"):
        artifact_sha256(model)


def test_the_artifact_root_itself_may_be_a_symlink(pickled_dir: Path, tmp_path: Path) -> None:
    """`build/model -> releases/7` is how people point at a release: only links inside are refused."""
    (tmp_path / "current").symlink_to(pickled_dir, target_is_directory=True)
    assert _load_pinned(tmp_path / "current").sha256 == artifact_sha256(pickled_dir)


def test_an_input_example_or_flavour_path_outside_the_directory_is_refused(pickled_dir: Path, tmp_path: Path) -> None:
    model = _copy(pickled_dir, tmp_path / "model")
    doc = yaml.safe_load((model / "MLmodel").read_text())
    doc["saved_input_example_info"] = {"artifact_path": "/etc/hostname", "type": "dataframe"}
    (model / "MLmodel").write_text(yaml.safe_dump(doc))
    with pytest.raises(UnsafeArtifactError, match=r"saved_input_example_info\.artifact_path"):
        _load_pinned(model)
    doc["saved_input_example_info"] = {"artifact_path": "input_example.json", "type": "dataframe"}
    doc["flavors"]["python_function"]["env"] = {"virtualenv": "../../venv.yaml"}
    (model / "MLmodel").write_text(yaml.safe_dump(doc))
    with pytest.raises(UnsafeArtifactError, match=r"flavors.python_function.env.virtualenv"):
        _load_pinned(model)


def test_a_file_named_like_the_cache_marker_is_part_of_the_digest(pickled_dir: Path, tmp_path: Path) -> None:
    model = _copy(pickled_dir, tmp_path / "model")
    before = artifact_sha256(model)
    (model / ".complete").write_text("x")
    assert artifact_sha256(model) != before


def test_a_model_file_added_after_the_digest_was_taken_is_not_loaded(pickled_dir: Path, tmp_path: Path) -> None:
    """The loader opens only files of the verified manifest, by name."""
    from lambda_fn import model_store

    model = _copy(pickled_dir, tmp_path / "model")
    marker = tmp_path / "marker"
    _edit_mlmodel(model, pickled_model="late.pkl")
    verify = model_store.Artifact.verify

    def verify_then_race(path: Path) -> model_store.Artifact:
        artifact = verify(path)
        _plant(model / "late.pkl", marker)  # written between hashing and loading
        return artifact

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(model_store.Artifact, "verify", staticmethod(verify_then_race))
        with pytest.raises(ModelLoadError, match="no such file"):
            load_model(settings_from({"MODEL_URI": str(model), "MODEL_SHA256": artifact_sha256(model)}))
    assert not marker.exists()


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("model.pkl", True),
        ("sub/model.pkl", True),
        ("", False),
        ("/abs", False),
        ("a//b", False),
        ("./a", False),
        ("a/..", False),
        ("../a", False),
        ("a\\..\\b", False),
        ("a\x00b", False),
    ],
)
def test_member_path_accepts_only_plain_relative_names(name: str, ok: bool) -> None:
    assert (member_path(name) is not None) is ok
