"""The monitoring reference in a release (moto S3): found in the model directory or computed from
--reference-data, uploaded and pinned by the manifest, verified, and refused when tampered with."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lambda_fn.monitoring.reference import Reference
from lambda_fn.monitoring.release_reference import ReferencePinError, load_reference
from lambda_fn.monitoring.s3_store import read_s3_uri
from servingkit.publish import PublishConflictError, PublishError, publish, verify_reference_published
from servingkit.publish_reference import NO_REFERENCE
from tests.helpers import run_cli, tiny_frame, tiny_pipeline
from tests.integration.conftest import BUCKET, Aws


def _with_reference(src: Path, dst: Path) -> tuple[Path, Reference]:
    shutil.copytree(src, dst)
    x, _ = tiny_frame(400, seed=3)
    ref = Reference.build(x, tiny_pipeline().predict(x), meta={"name": "tiny"})
    (dst / "reference.json").write_bytes(ref.to_json())
    return dst, ref


def _data(path: Path, n: int = 400, seed: int = 4) -> Path:
    x, _ = tiny_frame(n, seed=seed)
    x.to_csv(path, index=False)
    return path


def test_the_model_directory_s_reference_is_pinned_in_the_manifest(
    aws: Aws, tiny_mlflow_dir: Path, tmp_path: Path
) -> None:
    model, ref = _with_reference(tiny_mlflow_dir, tmp_path / "model")
    result = publish(str(model), BUCKET, name="tiny", tag_registry=False, allow_env_mismatch=True)
    entry = result.manifest["reference"]
    assert entry["uri"] == f"{result.model_uri}/reference.json"
    assert entry["sha256"] == ref.sha256 and entry["rows"] == 400
    assert entry["features"] == ["zone", "distance", "hour"]
    assert NO_REFERENCE not in result.warnings
    base = result.manifest_uri.rsplit("/", 1)[0].split("/", 3)[3]
    assert f"{base}/reference.json" not in result.uploaded  # a model file already: not uploaded twice
    stored = json.loads(aws.s3.get_object(Bucket=BUCKET, Key=f"{base}/release.json")["Body"].read())
    assert stored["reference"] == entry
    assert load_reference(entry["uri"], entry["sha256"]) == ref


def test_a_model_without_reference_publishes_with_a_warning(aws: Aws, tiny_mlflow_dir: Path) -> None:
    result = publish(str(tiny_mlflow_dir), BUCKET, name="tiny", tag_registry=False, allow_env_mismatch=True)
    assert result.manifest["reference"] is None
    assert NO_REFERENCE in result.warnings


def test_reference_data_is_scored_uploaded_beside_the_manifest_and_pinned(
    aws: Aws, tiny_mlflow_dir: Path, tmp_path: Path
) -> None:
    data = _data(tmp_path / "train.csv")
    result = publish(
        str(tiny_mlflow_dir), BUCKET, name="tiny", tag_registry=False, allow_env_mismatch=True, reference_data=data
    )
    entry = result.manifest["reference"]
    base = result.manifest_uri.rsplit("/", 1)[0]
    assert entry["uri"] == f"{base}/reference.json" and entry["origin"] == "--reference-data train.csv"
    assert entry["features"] == ["zone", "distance", "hour"] and entry["rows"] == 400
    assert base.split("/", 3)[3] + "/reference.json" in result.uploaded
    ref = load_reference(entry["uri"], entry["sha256"])
    assert ref.prediction.rows == 400 and ref.meta == {"name": "tiny"}
    again = publish(
        str(tiny_mlflow_dir), BUCKET, name="tiny", tag_registry=False, allow_env_mismatch=True, reference_data=data
    )
    assert again.already_published and again.manifest["reference"] == entry
    other = _data(tmp_path / "other.csv", seed=9)
    with pytest.raises(PublishConflictError, match="refusing to change the reference"):
        publish(
            str(tiny_mlflow_dir), BUCKET, name="tiny", tag_registry=False, allow_env_mismatch=True, reference_data=other
        )


def test_reference_data_without_the_signature_s_columns_is_refused(
    aws: Aws, tiny_mlflow_dir: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"zone": "a", "distance": 1.0}\n')
    with pytest.raises(PublishError, match=r"lacks the signature's columns \['hour'\]"):
        publish(str(tiny_mlflow_dir), BUCKET, tag_registry=False, allow_env_mismatch=True, reference_data=bad)
    assert "Contents" not in aws.s3.list_objects_v2(Bucket=BUCKET)  # nothing written


def test_a_tampered_reference_is_refused(aws: Aws, tiny_mlflow_dir: Path, tmp_path: Path) -> None:
    result = publish(
        str(tiny_mlflow_dir),
        BUCKET,
        name="tiny",
        tag_registry=False,
        allow_env_mismatch=True,
        reference_data=_data(tmp_path / "train.csv"),
    )
    entry = result.manifest["reference"]
    body = json.loads(read_s3_uri(entry["uri"]))
    body["rows"] += 1
    tampered = Reference.from_dict(body).to_json()  # well-formed, canonical, but not the pinned one
    key = entry["uri"].split("/", 3)[3]
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=tampered)
    with pytest.raises(ReferencePinError, match=f"is not the pinned {entry['sha256']}"):
        load_reference(entry["uri"], entry["sha256"])
    with pytest.raises(PublishError, match="verification failed"):
        verify_reference_published(entry)


def test_cli_prints_the_reference(
    aws: Aws, tiny_mlflow_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _data(tmp_path / "train.csv")
    argv = [
        "publish",
        str(tiny_mlflow_dir),
        "--bucket",
        BUCKET,
        "--name",
        "tiny",
        "--no-tag",
        "--allow-env-mismatch",
        "--reference-data",
        str(data),
    ]
    assert run_cli(argv) == 0
    out = capsys.readouterr().out
    assert "  reference    s3://models-bucket/models/tiny/" in out and "/reference.json sha256 " in out


def test_the_monitor_runs_on_a_published_release(
    aws: Aws, tiny_mlflow_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import UTC, datetime

    from lambda_fn.monitoring.profile import Profile
    from lambda_fn.monitoring.s3_store import Location, put_profile

    result = publish(
        str(tiny_mlflow_dir),
        BUCKET,
        name="tiny",
        tag_registry=False,
        allow_env_mismatch=True,
        reference_data=_data(tmp_path / "train.csv", n=2000),
    )
    entry = result.manifest["reference"]
    ref = load_reference(entry["uri"], entry["sha256"])
    at = datetime(2026, 12, 1, 10, 5, tzinfo=UTC)
    x, _ = tiny_frame(1500, seed=11)
    x["distance"] = x["distance"] + 30.0  # every trip longer than training's longest
    profile = Profile.new(ref)
    profile.add_batch(x, tiny_pipeline().predict(x))
    put_profile(aws.s3, Location(BUCKET, "monitoring", "tiny", result.sha256), profile, model={"name": "tiny"}, at=at)
    argv = [
        "monitor",
        "run",
        "--release",
        result.manifest_uri,
        "--bucket",
        BUCKET,
        "--at",
        "2026-12-01T10:15Z",
        "--no-metrics",
    ]
    assert run_cli(argv) == 0
    out = capsys.readouterr().out
    assert "alert" in out and "'distance'" in out and "rows {'primary': 1500}" in out
