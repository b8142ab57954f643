"""Publishing compares the model's recorded Python / scikit-learn with the IMAGE's (not this host's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lambda_fn.model_env import Runtime
from servingkit.image.platform import REQUIREMENTS, base_image, locked_versions
from servingkit.publish import PublishError, check_environment, image_runtime, publish
from tests.helpers import recorded_env_variant, run_cli
from tests.integration.conftest import BUCKET, Aws

ROOT = Path(__file__).resolve().parents[2]
IMAGE_SKLEARN = locked_versions(REQUIREMENTS)["scikit-learn"]


def _minor_before(version: str) -> str:
    major, minor = (int(p) for p in version.split(".")[:2])
    return f"{major}.{minor - 1}"


def test_the_image_runtime_is_the_dockerfile_python_and_the_scikit_learn_pin() -> None:
    runtime = image_runtime()
    assert runtime.python == base_image().platform.python and runtime.sklearn == IMAGE_SKLEARN
    assert base_image().image in runtime.label


def test_a_model_of_another_scikit_learn_minor_is_refused_before_anything_is_uploaded(
    aws: Aws, tiny_mlflow_dir: Path, tmp_path: Path
) -> None:
    old = _minor_before(IMAGE_SKLEARN) + ".2"
    model = recorded_env_variant(tiny_mlflow_dir, tmp_path / "old", sklearn=old)
    with pytest.raises(PublishError) as caught:
        publish(str(model), BUCKET, s3=aws.s3)
    message = str(caught.value)
    assert "\n" not in message and "--allow-env-mismatch" in message
    assert f"scikit-learn {old} recorded in the model's requirements.txt, {IMAGE_SKLEARN} in the image (" in message
    assert "Contents" not in aws.s3.list_objects_v2(Bucket=BUCKET)  # nothing written

    result = publish(str(model), BUCKET, s3=aws.s3, allow_env_mismatch=True)
    assert result.verified and any("published anyway: --allow-env-mismatch" in w for w in result.warnings)


def test_the_image_not_the_publishing_host_decides(
    tiny_mlflow_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A skops model of another Python minor: a warning. The same as cloudpickle: refused. Patch: a warning."""
    image = base_image().platform.python
    model = recorded_env_variant(tiny_mlflow_dir, tmp_path / "py", python=_minor_before(image) + ".7")
    (warning,) = check_environment(model, allow_mismatch=False)  # tiny_mlflow_dir is skops
    assert f"recorded in the model's python_env.yaml, {image} in the image" in warning
    mlmodel = model / "MLmodel"
    mlmodel.write_text(mlmodel.read_text().replace("serialization_format: skops", "serialization_format: cloudpickle"))
    with pytest.raises(PublishError, match=r"a cloudpickle model holds pickled byte code"):
        check_environment(model, allow_mismatch=False)

    major, minor, patch = IMAGE_SKLEARN.split(".")[:3]
    patched = recorded_env_variant(tiny_mlflow_dir, tmp_path / "patch", sklearn=f"{major}.{minor}.{int(patch) + 1}")
    assert check_environment(patched, allow_mismatch=False) == [
        f"scikit-learn {major}.{minor}.{int(patch) + 1} recorded in the model's requirements.txt, {IMAGE_SKLEARN} in "
        f"{image_runtime().label} (patch-level difference)"
    ]
    # A host with another Python and scikit-learn changes nothing: only the image's versions are compared.
    monkeypatch.setattr(Runtime, "current", classmethod(lambda cls: Runtime("3.1.0", "0.20.0", "the host")))
    assert check_environment(tiny_mlflow_dir, allow_mismatch=False) == []
    with pytest.raises(PublishError, match=r"0\.20\.0 in the host"):
        check_environment(tiny_mlflow_dir, allow_mismatch=False, runtime=Runtime.current())


def test_cli_refuses_in_one_line_and_allow_env_mismatch_publishes(
    aws: Aws, tiny_mlflow_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = recorded_env_variant(tiny_mlflow_dir, tmp_path / "old", sklearn=_minor_before(IMAGE_SKLEARN) + ".0")
    assert run_cli(["publish", str(model), "--bucket", BUCKET]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the model's environment does not match the image's: scikit-learn ")
    assert err.count("\n") == 1 and "--allow-env-mismatch" in err
    assert run_cli(["publish", str(model), "--bucket", BUCKET, "--allow-env-mismatch"]) == 0
    captured = capsys.readouterr()
    assert "published: tiny version" in captured.out
    assert captured.err.startswith("warning: scikit-learn ") and "published anyway" in captured.err
