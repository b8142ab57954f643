"""Publish from a real local MLflow registry (SQLite) into moto S3, then score through the handler."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import boto3
import pytest

from lambda_fn.model_store import artifact_sha256
from servingkit.publish import MANIFEST, PublishConflictError, PublishError, promote, publish
from tests.helpers import FakeContext, kinesis_event, run_cli, tiny_frame, tiny_pipeline, tiny_row
from tests.integration.conftest import BUCKET, Aws
from tests.integration.registry import Registry, two_versions

ROOT = Path(__file__).resolve().parents[2]
NAME = "tiny"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Two registered versions of `tiny` (different coefficients) and the champion alias on version 1, each with
    the release's training metrics and smoke example."""
    with two_versions(tmp_path_factory.mktemp("mlflow"), NAME, release_inputs=True) as reg:
        yield reg


def _manifest(aws: Aws, uri: str) -> dict[str, object]:
    key = uri.removeprefix(f"s3://{BUCKET}/")
    return json.loads(aws.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())  # type: ignore[no-any-return]


def test_publish_alias_then_score_it_through_the_handler_without_mlflow(
    registry: Registry, aws: Aws, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import mlflow.artifacts
    from mlflow import MlflowClient

    result = publish(f"models:/{NAME}@champion", BUCKET, tracking_uri=registry.uri, s3=aws.s3)

    downloaded = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{NAME}/1", dst_path=str(tmp_path / "v1"), tracking_uri=registry.uri
        )
    )
    assert (downloaded / "registered_model_meta").is_file()  # written by the download: not the model's content
    expected_sha = artifact_sha256(downloaded)
    assert result.sha256 == expected_sha and result.verified and not result.already_published
    assert result.model_uri == f"s3://{BUCKET}/models/{NAME}/{expected_sha}/model"
    keys = {o["Key"] for o in aws.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"models/{NAME}/")["Contents"]}
    assert f"models/{NAME}/{expected_sha}/model/MLmodel" in keys
    assert f"models/{NAME}/{expected_sha}/{MANIFEST}" in keys

    manifest = _manifest(aws, result.manifest_uri)
    assert manifest == result.manifest
    assert (manifest["name"], manifest["version"], manifest["sha256"]) == (NAME, "1", expected_sha)
    assert manifest["metrics"] == {"mae": 0.25, "rmse": 0.5}  # the run's, for the monitor's quality job
    assert str(manifest["metrics_origin"]).startswith("the MLflow run ")
    assert manifest["model_uri"] == result.model_uri
    source = manifest["source"]
    assert isinstance(source, dict)
    assert source["run_id"] == registry.run_ids[0] and source["alias"] == "champion"
    assert source["registered_version"] == "1" and source["uri"] == f"models:/{NAME}@champion"
    signature = manifest["signature"]
    assert isinstance(signature, dict)
    assert [c["name"] for c in signature["inputs"]] == ["zone", "distance", "hour"]
    assert datetime.fromisoformat(str(manifest["created"])).tzinfo is not None
    smoke = manifest["smoke"]  # the pre-traffic hook's example: the model's input example and its predictions
    assert isinstance(smoke, dict) and 0 < len(smoke["inputs"]) <= 20
    assert len(smoke["predictions"]) == len(smoke["inputs"]) and smoke["tolerance"] == {"rel": 1e-6, "abs": 1e-9}
    x, _ = tiny_frame()
    assert smoke["predictions"] == pytest.approx(list(tiny_pipeline().predict(x.head(3))), rel=1e-9)
    paths = {f["path"] for f in manifest["files"]}  # type: ignore[attr-defined]
    assert {"MLmodel", "model.skops"} <= paths and "registered_model_meta" not in paths

    tags = MlflowClient(registry.uri, registry.uri).get_model_version(NAME, "1").tags
    assert tags["servingkit.sha256"] == expected_sha and tags["servingkit.model_uri"] == result.model_uri

    # The function gets exactly the deploy context, and no way to reach the tracking server.
    for key, value in result.context().items():
        clean_env.setenv(key.upper(), value)
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    from lambda_fn import handler

    rows = [{"id": f"r{i}", "features": tiny_row(i)} for i in range(20)]
    assert handler.stream_handler(kinesis_event(rows), FakeContext()) == {"batchItemFailures": []}
    out = aws.output_records()
    assert len(out) == 20 and not aws.dead_letters()
    assert {json.dumps(o["model"], sort_keys=True) for o in out} == {
        json.dumps({"name": NAME, "version": "1", "sha256": expected_sha}, sort_keys=True)
    }
    assert "cdk deploy -c model_uri=" in result.deploy_command() and f"-c model_sha256={expected_sha}" in (
        result.deploy_command()
    )


def test_republishing_is_a_no_op_and_different_content_is_refused(registry: Registry, aws: Aws) -> None:
    first = publish(f"models:/{NAME}/2", BUCKET, tracking_uri=registry.uri, s3=aws.s3)
    again = publish(f"models:/{NAME}/2", BUCKET, tracking_uri=registry.uri, s3=aws.s3)
    assert again.already_published and again.uploaded == [] and len(again.unchanged) == len(first.uploaded)
    assert again.manifest["created"] == first.manifest["created"]

    # The run URI names the same artifact: same content, same key, nothing written.
    by_run = publish(f"runs:/{registry.run_ids[1]}/model", BUCKET, tracking_uri=registry.uri, s3=aws.s3)
    assert by_run.sha256 == first.sha256 and by_run.already_published and by_run.uploaded == []

    key = first.model_uri.removeprefix(f"s3://{BUCKET}/") + "/MLmodel"
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=b"tampered")
    with pytest.raises(PublishConflictError, match="different content"):
        publish(f"models:/{NAME}/2", BUCKET, tracking_uri=registry.uri, s3=aws.s3)

    other = publish(f"models:/{NAME}/1", BUCKET, tracking_uri=registry.uri, s3=aws.s3, tag_registry=False)
    stranger = other.model_uri.removeprefix(f"s3://{BUCKET}/") + "/extra.bin"
    aws.s3.put_object(Bucket=BUCKET, Key=stranger, Body=b"x")
    with pytest.raises(PublishConflictError, match="not part of this artifact"):
        publish(f"models:/{NAME}/1", BUCKET, tracking_uri=registry.uri, s3=aws.s3)


def test_local_directory_is_published_by_its_content_and_missing_bucket(
    aws: Aws, tiny_mlflow_dir: Path, tmp_path: Path
) -> None:
    local = tmp_path / "export"
    shutil.copytree(tiny_mlflow_dir, local)
    bare = artifact_sha256(local)
    (local / "registered_model_meta").write_text("model_name: tiny\nmodel_version: '1'\n")  # as an export has
    result = publish(str(local), BUCKET, s3=aws.s3, prefix="releases")
    sha = artifact_sha256(local)  # e.g. the digest `servingkit train` wrote into build/release.json
    assert sha == bare  # registered_model_meta is not content
    assert result.model_uri == f"s3://{BUCKET}/releases/tiny/{sha}/model"
    assert result.manifest["version"] == sha[:12] and result.manifest["source"]["registered_model"] is None
    assert result.manifest["metrics"] is None and result.manifest["metrics_origin"] is None  # no metrics.json
    keys = {o["Key"] for o in aws.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"releases/tiny/{sha}/")["Contents"]}
    assert f"releases/tiny/{sha}/model/MLmodel" in keys
    assert not any(k.endswith("registered_model_meta") for k in keys)  # what is not in the digest is not shipped
    with pytest.raises(PublishError, match="does not exist"):
        publish(str(tiny_mlflow_dir), "no-such-bucket", s3=aws.s3)
    with pytest.raises(PublishError, match="neither"):
        publish("/no/such/dir", BUCKET, s3=aws.s3)


def test_one_model_version_one_digest_whichever_way_it_is_published(
    registry: Registry, aws: Aws, tmp_path: Path
) -> None:
    """An export of version 1 (as `servingkit train` leaves build/model), /1, @champion and runs:/ are one release."""
    import mlflow.artifacts

    export = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{NAME}/1", dst_path=str(tmp_path / "export"), tracking_uri=registry.uri
        )
    )
    meta = (export / "registered_model_meta").read_text()
    assert "model_version" in meta  # the download records how it was referenced: that must not change the digest
    uris = [str(export), f"models:/{NAME}/1", f"models:/{NAME}@champion", f"runs:/{registry.run_ids[0]}/model"]
    results = [publish(u, BUCKET, tracking_uri=registry.uri, s3=aws.s3, prefix="one", tag_registry=False) for u in uris]
    assert len({r.sha256 for r in results}) == 1 and len({r.model_uri for r in results}) == 1
    assert [r.already_published for r in results] == [False, True, True, True]
    # The manifest says where the release came from (the first publish's source: the export directory).
    assert results[0].manifest["source"]["uri"] == str(export)
    by_alias = publish(f"models:/{NAME}@champion", BUCKET, tracking_uri=registry.uri, s3=aws.s3, prefix="alias")
    source = by_alias.manifest["source"]
    assert (source["registered_model"], source["registered_version"], source["alias"]) == (NAME, "1", "champion")
    assert source["run_id"] == registry.run_ids[0] and by_alias.sha256 == results[0].sha256


def test_promote_sets_champion_and_challenger_in_one_call(registry: Registry) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(registry.uri, registry.uri)
    try:
        changes = promote(NAME, {"champion": "2", "challenger": "1"}, tracking_uri=registry.uri)
        assert changes == {"champion": ("1", "2"), "challenger": (None, "1")}
        assert str(client.get_model_version_by_alias(NAME, "champion").version) == "2"
        assert str(client.get_model_version_by_alias(NAME, "challenger").version) == "1"
        with pytest.raises(PublishError, match="cannot promote"):
            promote(NAME, {"champion": "99"}, tracking_uri=registry.uri)
        assert str(client.get_model_version_by_alias(NAME, "champion").version) == "2"
    finally:
        client.set_registered_model_alias(NAME, "champion", "1")
        client.delete_registered_model_alias(NAME, "challenger")


def test_cli_publishes_to_an_emulator_through_the_standard_endpoint_variable(
    registry: Registry, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from servingkit.localcloud.emulator import start_emulator

    with start_emulator() as emu:
        clean_env.setenv("AWS_ENDPOINT_URL_S3", emu.endpoint_url)  # the only thing pointing boto3 at it
        clean_env.setenv("MLFLOW_TRACKING_URI", registry.uri)
        clean_env.delenv("MODEL_BUCKET", raising=False)
        boto3.client("s3").create_bucket(Bucket="cli-models")
        assert run_cli(["publish", f"models:/{NAME}/1", "--bucket", "cli-models"]) == 0
        human = capsys.readouterr().out
        assert "published: tiny version 1" in human and "cdk deploy -c model_uri=s3://cli-models/models/tiny/" in human
        assert run_cli(["publish", f"models:/{NAME}/1", "--bucket", "cli-models", "--json"]) == 0
        data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        key = data["manifest_uri"].removeprefix("s3://cli-models/")
        manifest = json.loads(boto3.client("s3").get_object(Bucket="cli-models", Key=key)["Body"].read())
        assert manifest["sha256"] == data["model_sha256"] and data["model_version"] == "1"
        assert run_cli(["promote", NAME, "--champion", "42"]) == 1
        assert "cannot promote" in capsys.readouterr().err
        assert run_cli(["publish", f"models:/{NAME}/1"]) == 2  # no bucket given
