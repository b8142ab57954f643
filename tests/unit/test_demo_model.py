"""`servingkit demo`'s model check: the default build is (re)trained when missing or stale, a model the user
named is never overwritten (a stale one is refused in one line)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

import servingkit.demo as demo
import servingkit.train
from lambda_fn.model_store import artifact_sha256
from servingkit.cli import main
from servingkit.localcloud.resources import ExportedModel

OLD_PIN = "0" * 64  # what a build/release.json written under another digest rule pins: not the directory's digest


def export(model_dir: Path, content: str, pin: str | None = None) -> Path:
    """A model directory and its release.json beside it, as `servingkit train` exports them; returns the release."""
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "MLmodel").write_text(f"flavors: {{}}\n# {content}\n")
    release = model_dir.parent / "release.json"
    release.write_text(json.dumps({"name": "taxi", "version": "1", "sha256": pin or artifact_sha256(model_dir)}))
    return release


@pytest.fixture
def default_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Path, Path, list[Path]]:
    """build/model and build/release.json under tmp_path as the demo's defaults; `train` exports a fresh model there
    and records each directory it was asked to export to."""
    model_dir, release = tmp_path / "build" / "model", tmp_path / "build" / "release.json"
    monkeypatch.setattr(demo, "DEFAULT_MODEL_DIR", model_dir)
    monkeypatch.setattr(demo, "DEFAULT_RELEASE", release)
    trained: list[Path] = []

    def train(*, export_dir: Path) -> SimpleNamespace:
        trained.append(export_dir)
        export(export_dir, "retrained")
        return SimpleNamespace(rmse=3.5, sha256=artifact_sha256(export_dir))

    monkeypatch.setattr(servingkit.train, "train", train)
    return model_dir, release, trained


def test_a_stale_default_build_is_retrained_with_one_line_saying_so(
    default_build: tuple[Path, Path, list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir, release, trained = default_build
    export(model_dir, "old build", pin=OLD_PIN)
    with pytest.raises(Exception, match="pins"):
        ExportedModel.load(model_dir, release)  # what the demo refused before

    demo.ensure_model(model_dir, release)

    assert trained == [model_dir]
    said = capsys.readouterr().err.splitlines()
    assert said[0] == f"{model_dir} is stale (not what {release} pins): retraining the demo model (about 10 s) ..."
    assert said[1].startswith("trained: rmse 3.50 min, sha256 ")
    assert ExportedModel.load(model_dir, release).sha256 == json.loads(release.read_text())["sha256"] != OLD_PIN


def test_a_default_release_that_pins_nothing_is_stale_too(
    default_build: tuple[Path, Path, list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir, release, trained = default_build
    export(model_dir, "old build")
    release.write_text("{not json")
    demo.ensure_model(model_dir, release)
    assert trained == [model_dir] and "is stale" in capsys.readouterr().err
    ExportedModel.load(model_dir, release)


def test_a_current_default_build_is_used_as_it_is(
    default_build: tuple[Path, Path, list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir, release, trained = default_build
    export(model_dir, "current build")
    before = release.read_text()
    demo.ensure_model(model_dir, release)
    assert trained == [] and capsys.readouterr().err == "" and release.read_text() == before


def test_a_missing_default_build_is_trained(
    default_build: tuple[Path, Path, list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir, release, trained = default_build
    demo.ensure_model(model_dir, release)
    assert trained == [model_dir] and f"{model_dir} is missing: training" in capsys.readouterr().err


def test_a_stale_model_the_user_named_is_refused_in_one_line_and_left_alone(
    default_build: tuple[Path, Path, list[Path]], tmp_path: Path
) -> None:
    _, _, trained = default_build
    mine = tmp_path / "mine" / "model"
    release = export(mine, "user's model", pin=OLD_PIN)
    files = {p: p.read_bytes() for p in (mine / "MLmodel", release)}

    result = CliRunner().invoke(main, ["demo", "--model-dir", str(mine), "--release", str(release), "--no-progress"])

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    error = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert error == [
        f"error: {mine} has sha256 {artifact_sha256(mine)} but {release} pins {OLD_PIN}: "
        "give the release.json exported with it"
    ]
    assert trained == [] and {p: p.read_bytes() for p in files} == files


def test_a_missing_model_the_user_named_is_refused(
    default_build: tuple[Path, Path, list[Path]], tmp_path: Path
) -> None:
    _, _, trained = default_build
    with pytest.raises(demo.DemoError, match="is not a model directory"):
        demo.ensure_model(tmp_path / "nowhere", tmp_path / "release.json")
    assert trained == []


def test_the_benches_and_the_local_server_refuse_a_stale_default_build_in_one_line(tmp_path: Path) -> None:
    """`demo_artifact` (bench, `servingkit serve`): a stale build is a MissingModelError saying to train again,
    not a checksum mismatch inside a child process later; a current one is returned with its release."""
    model_dir = tmp_path / servingkit.train.DEFAULT_EXPORT
    export(model_dir, "current")
    found, release = servingkit.train.demo_artifact(tmp_path)
    assert found == model_dir and release["sha256"] == artifact_sha256(model_dir)
    export(model_dir, "stale", pin=OLD_PIN)
    with pytest.raises(servingkit.train.MissingModelError, match=r"is stale: .* run `make model`"):
        servingkit.train.demo_artifact(tmp_path)
