"""lambda_fn.model_env: a model's recorded Python / scikit-learn against the runtime's, at load."""

from __future__ import annotations

import platform
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from lambda_fn import model_env
from lambda_fn.config import ConfigError, Env, settings_from
from lambda_fn.model_env import (
    EnvMismatchError,
    Recorded,
    RecordedEnv,
    Runtime,
    check_model_env,
    compare,
    model_format,
    pinned_version,
    read_recorded,
)
from lambda_fn.model_store import ModelLoadError, artifact_sha256, load_model
from tests.helpers import recorded_env_variant, save_mlflow_model, tiny_frame, tiny_pipeline

SKLEARN = metadata.version("scikit-learn")


def _other_minor(version: str) -> str:
    major, minor = (int(p) for p in version.split(".")[:2])
    return f"{major}.{minor - 1 if minor else minor + 1}.0"


def _other_patch(version: str) -> str:
    major, minor, patch = (int(re.match(r"\d+", p)[0]) for p in version.split(".")[:3])  # type: ignore[index]
    return f"{major}.{minor}.{patch + 1}"


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("env-models")
    model = tiny_pipeline()
    return {
        "skops": save_mlflow_model(root / "skops", model),
        "cloudpickle": save_mlflow_model(root / "cloudpickle", model, serialization_format="cloudpickle"),
    }


def _recorded(python: str | None = "3.13.0", sklearn: str | None = "1.9.1") -> RecordedEnv:
    return RecordedEnv(
        python=Recorded(python, "python_env.yaml") if python else None,
        sklearn=Recorded(sklearn, "requirements.txt") if sklearn else None,
    )


# --------------------------------------------------------------------------- what MLflow records


def test_an_mlflow_directory_records_this_interpreter_and_scikit_learn(saved: dict[str, Path]) -> None:
    recorded = read_recorded(saved["cloudpickle"])
    assert recorded.python == Recorded(platform.python_version(), "python_env.yaml")
    assert recorded.sklearn == Recorded(SKLEARN, "requirements.txt")
    assert recorded.unreadable == () and recorded.not_recorded == ()
    assert model_format(saved["cloudpickle"]) == "cloudpickle" and model_format(saved["skops"]) == "skops"
    result = compare(recorded, Runtime.current(), "cloudpickle")
    assert result.warnings == () and result.refusals == ()


def test_fallbacks_conda_then_mlmodel_and_nothing_recorded(saved: dict[str, Path], tmp_path: Path) -> None:
    model = recorded_env_variant(saved["skops"], tmp_path / "m")
    (model / "python_env.yaml").unlink()
    (model / "requirements.txt").write_text("scikit-learn>=1.0\n")  # a range is no record of the version
    recorded = read_recorded(model)
    assert recorded.python == Recorded(platform.python_version(), "conda.yaml")
    assert recorded.sklearn == Recorded(SKLEARN, "conda.yaml")
    (model / "conda.yaml").unlink()
    recorded = read_recorded(model)
    assert recorded.python == Recorded(platform.python_version(), "MLmodel")
    assert recorded.sklearn == Recorded(SKLEARN, "MLmodel")

    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "MLmodel").write_text("flavors: {}\n")
    recorded = read_recorded(bare)
    assert recorded.python is None and recorded.sklearn is None and recorded.unreadable == ()
    assert len(recorded.not_recorded) == 2 and all("nothing to compare" in n for n in recorded.not_recorded)
    assert check_model_env(bare) == []


def test_missing_python_env_yaml_is_said_in_a_debug_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "MLmodel").write_text("flavors:\n  sklearn: {serialization_format: skops}\n")
    (tmp_path / "requirements.txt").write_text(f"scikit-learn=={SKLEARN}\n")
    logged: list[tuple[str, str]] = []

    class Recorder:
        def debug(self, msg: str) -> None:
            logged.append(("debug", msg))

        def warning(self, msg: str) -> None:
            logged.append(("warning", msg))

    monkeypatch.setattr(model_env, "logger", Recorder())
    assert check_model_env(tmp_path, where="s3://b/m") == []
    assert logged == [
        ("debug", "model environment of s3://b/m: no Python version recorded (python_env.yaml, conda.yaml, MLmodel): "
         "nothing to compare")
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("python_env.yaml", "python: [3.13\n", "python_env.yaml is not readable YAML"),
        ("python_env.yaml", "- python\n- 3.13.0\n", "python_env.yaml is not a mapping"),
        ("python_env.yaml", "python: latest\n", "Python version 'latest' in python_env.yaml is not a version"),
        ("conda.yaml", "dependencies: python=3.13\n", "conda.yaml has no dependencies list"),
        ("requirements.txt", b"\xff\xfe\x00garbage", "requirements.txt is not readable"),
        ("requirements.txt", "scikit-learn==one.two\n", "'one.two' in requirements.txt is not a version"),
    ],
)
def test_garbled_files_are_a_clear_warning_not_a_crash(
    saved: dict[str, Path], tmp_path: Path, name: str, content: str | bytes, needle: str
) -> None:
    model = recorded_env_variant(saved["skops"], tmp_path / "m")
    if isinstance(content, bytes):
        (model / name).write_bytes(content)
    else:
        (model / name).write_text(content)
    warnings = check_model_env(model, runtime=Runtime.current())
    assert any(needle in w for w in warnings), warnings


def test_pins_are_read_by_canonical_name_and_exact_operator_only() -> None:
    text = "# scikit-learn==0.1\nScikit_Learn[alldeps] == 1.9.1 ; python_version >= '3.11'  # pinned\nnumpy==2.4.6\n"
    assert pinned_version(text, "scikit-learn") == "1.9.1"
    assert pinned_version("scikit-learn>=1.9\n", "scikit-learn") is None
    assert pinned_version("scikit-learn===1.9.1\n", "scikit-learn") == "1.9.1"
    assert pinned_version("", "scikit-learn") is None


# --------------------------------------------------------------------------- the rules


@pytest.mark.parametrize(
    ("recorded", "runtime", "fmt", "warned", "refused"),
    [
        (("3.13.0", "1.9.1"), ("3.13.0", "1.9.1"), "cloudpickle", 0, 0),
        (("3.13.0", "1.9.0"), ("3.13.0", "1.9.1"), "skops", 1, 0),  # scikit-learn patch
        (("3.13.0", "1.9.1.post1"), ("3.13.0", "1.9.1"), "skops", 1, 0),
        (("3.13.0", "1.8.2"), ("3.13.0", "1.9.1"), "skops", 0, 1),  # scikit-learn minor: every format
        (("3.13.0", "1.8.2"), ("3.13.0", "1.9.1"), "cloudpickle", 0, 1),
        (("3.13.0", "0.9.1"), ("3.13.0", "1.9.1"), "skops", 0, 1),  # major
        (("3.13.0", "1.9.1"), ("3.13.5", "1.9.1"), "cloudpickle", 1, 0),  # Python patch
        (("3.12.4", "1.9.1"), ("3.13.0", "1.9.1"), "cloudpickle", 0, 1),  # Python minor: pickle-based
        (("3.12.4", "1.9.1"), ("3.13.0", "1.9.1"), "pickle", 0, 1),
        (("3.12.4", "1.9.1"), ("3.13.0", "1.9.1"), "joblib", 0, 1),
        (("3.12.4", "1.9.1"), ("3.13.0", "1.9.1"), "mlflow-sklearn-cloudpickle", 0, 1),
        (("3.12.4", "1.9.1"), ("3.13.0", "1.9.1"), "pyfunc", 0, 1),
        (("3.12.4", "1.9.1"), ("3.13.0", "1.9.1"), "skops", 1, 0),  # ... a warning for skops
        (("3.12.4", "1.9.1"), ("3.13.0", "1.9.1"), "mlflow-sklearn-skops", 1, 0),
        (("3.13.0", "1.9.1"), ("3.13", "1.9.1"), "cloudpickle", 0, 0),  # the image's Python has no patch
        (("3.12.4", "1.8.0"), ("3.13.0", "1.9.1"), "cloudpickle", 0, 2),
        ((None, None), ("3.13.0", "1.9.1"), "cloudpickle", 0, 0),  # nothing recorded
        (("3.13.0", "1.8.0"), ("3.13.0", None), "cloudpickle", 0, 0),  # scikit-learn not installed
    ],
)
def test_rules(
    recorded: tuple[str | None, str | None], runtime: tuple[str, str | None], fmt: str, warned: int, refused: int
) -> None:
    result = compare(_recorded(*recorded), Runtime(*runtime), fmt)
    assert (len(result.warnings), len(result.refusals)) == (warned, refused), result


def test_messages_name_both_versions_and_the_file() -> None:
    result = compare(_recorded("3.12.4", "1.8.2"), Runtime("3.13.0", "1.9.1"), "cloudpickle")
    python, sklearn = result.refusals
    assert "Python 3.12.4 recorded in the model's python_env.yaml, 3.13.0 in this runtime" in python
    assert "pickled byte code" in python
    assert "scikit-learn 1.8.2 recorded in the model's requirements.txt, 1.9.1 in this runtime" in sklearn
    assert "does not support loading a model saved by another version" in sklearn
    (warning,) = compare(_recorded("3.13.0", "1.9.0"), Runtime("3.13.0", "1.9.1"), "skops").warnings
    assert (
        warning
        == "scikit-learn 1.9.0 recorded in the model's requirements.txt, 1.9.1 in this runtime (patch-level difference)"
    )


def test_a_refusal_is_a_load_error_naming_the_override_which_turns_it_into_a_warning(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    old = recorded_env_variant(saved["cloudpickle"], tmp_path / "old", sklearn=_other_minor(SKLEARN))
    with pytest.raises(EnvMismatchError) as caught:
        check_model_env(old, where="s3://bucket/models/old")
    message = str(caught.value)
    assert isinstance(caught.value, ModelLoadError)
    assert message.startswith("refusing to load s3://bucket/models/old: scikit-learn ")
    assert f"{_other_minor(SKLEARN)} recorded in the model's requirements.txt, {SKLEARN} in this runtime" in message
    assert f"{Env.MODEL_ALLOW_ENV_MISMATCH}=true" in message
    (warning,) = check_model_env(old, allow_mismatch=True)
    assert warning.endswith(f"(loaded anyway: {Env.MODEL_ALLOW_ENV_MISMATCH}=true)")


def test_the_setting_is_a_validated_boolean() -> None:
    base = {Env.MODEL_URI: "s3://bucket/m.skops"}
    assert settings_from(base).model_allow_env_mismatch is False
    assert settings_from({**base, Env.MODEL_ALLOW_ENV_MISMATCH: "true"}).model_allow_env_mismatch is True
    assert settings_from({**base, Env.MODEL_ALLOW_ENV_MISMATCH: "No"}).model_allow_env_mismatch is False
    with pytest.raises(ConfigError, match="MODEL_ALLOW_ENV_MISMATCH='sometimes': must be true or false"):
        settings_from({**base, Env.MODEL_ALLOW_ENV_MISMATCH: "sometimes"})


# --------------------------------------------------------------------------- wired into the model store


def _load(path: Path, **env: str) -> Any:
    return load_model(settings_from({"MODEL_URI": str(path), "MODEL_SHA256": artifact_sha256(path), **env}))


def test_model_store_refuses_a_model_of_another_scikit_learn_minor_unless_allowed(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    old = recorded_env_variant(saved["cloudpickle"], tmp_path / "old", sklearn=_other_minor(SKLEARN))
    with pytest.raises(ModelLoadError, match=rf"scikit-learn {_other_minor(SKLEARN)} .*MODEL_ALLOW_ENV_MISMATCH=true"):
        _load(old)
    model = _load(old, MODEL_ALLOW_ENV_MISMATCH="true")
    assert model.format == "mlflow-sklearn-cloudpickle" and len(model.env_warnings) == 1
    assert "loaded anyway" in model.env_warnings[0]
    x, _ = tiny_frame(3)
    assert len(model.predict(x)) == 3


def test_model_store_python_minor_refuses_pickle_warns_for_skops_and_patch_warns(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    major, minor = platform.python_version_tuple()[:2]
    other = f"{major}.{int(minor) - 1}.9"
    with pytest.raises(ModelLoadError, match=rf"Python {re.escape(other)} recorded .*pickled byte code"):
        _load(recorded_env_variant(saved["cloudpickle"], tmp_path / "pickled", python=other))
    skops = _load(recorded_env_variant(saved["skops"], tmp_path / "skops", python=other))
    assert skops.format == "mlflow-sklearn-skops" and "skops stores no byte code" in skops.env_warnings[0]
    patched = _load(recorded_env_variant(saved["cloudpickle"], tmp_path / "patch", sklearn=_other_patch(SKLEARN)))
    assert patched.env_warnings == [
        f"scikit-learn {_other_patch(SKLEARN)} recorded in the model's requirements.txt, {SKLEARN} in this runtime "
        "(patch-level difference)"
    ]
    assert _load(saved["cloudpickle"]).env_warnings == []
