"""The release path end to end on moto (S3, CloudFormation, CodeDeploy) and a real MLflow registry (SQLite):
alias → publish → `cdk deploy` (a stand-in that starts CodeDeploy deployments as CloudFormation would) → wait →
done, or rolled back with the alias back on the version that serves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from servingkit.publish import MANIFEST
from servingkit.release import ReleaseError, ReleaseRequest, registry_context, release
from tests.helpers import run_cli
from tests.integration.conftest import BUCKET, Aws
from tests.integration.registry import two_versions

NAME = "tiny-release"
APP = "serving-dev"
GROUPS = ("ScorerDeployment", "ApiDeployment")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Two registered versions of NAME; champion on version 1."""
    with two_versions(tmp_path_factory.mktemp("mlflow"), NAME) as reg:
        yield reg.uri


@dataclass
class Cloud:
    """The stage as the release sees it: the stack's outputs, CodeDeploy's application and groups."""

    aws: Aws
    codedeploy: Any
    outcome: str = "Succeeded"
    deploys: list[list[str]] = field(default_factory=list)

    def cdk(self, argv: list[str], check: bool = False) -> Any:
        """`cdk deploy` as CloudFormation runs it: a new version of each function, one deployment per alias."""
        from moto.codedeploy.models import codedeploy_backends
        from moto.core.models import DEFAULT_ACCOUNT_ID

        self.deploys.append(argv)
        backend = codedeploy_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        for group in GROUPS:
            deployment_id = self.codedeploy.create_deployment(
                applicationName=APP,
                deploymentGroupName=group,
                revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": "{}"}},
            )["deploymentId"]
            backend.deployments[deployment_id].status = self.outcome
        return type("Done", (), {"returncode": 0 if self.outcome == "Succeeded" else 1})()


@pytest.fixture
def cloud(aws: Aws, registry: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry)
    cfn = boto3.client("cloudformation")
    outputs = {"ModelBucketName": BUCKET, "DeploymentApplication": APP}
    cfn.create_stack(
        StackName="ServingKit-dev",
        TemplateBody=json.dumps(
            {
                "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {k: {"Value": v} for k, v in outputs.items()},
            }
        ),
    )
    codedeploy = boto3.client("codedeploy")
    codedeploy.create_application(applicationName=APP, computePlatform="Lambda")
    for group in GROUPS:
        codedeploy.create_deployment_group(
            applicationName=APP, deploymentGroupName=group, serviceRoleArn="arn:aws:iam::123456789012:role/cd"
        )
    yield Cloud(aws, codedeploy)
    from mlflow import MlflowClient

    MlflowClient(registry, registry).set_registered_model_alias(NAME, "champion", "1")


def request(registry: str, **kw: Any) -> ReleaseRequest:
    return ReleaseRequest(name=NAME, alias="champion", stage="dev", tracking_uri=registry, poll_s=0.1, **kw)


def champion(registry: str) -> str:
    from mlflow import MlflowClient

    return str(MlflowClient(registry, registry).get_model_version_by_alias(NAME, "champion").version)


def test_release_promotes_publishes_deploys_and_waits(cloud: Cloud, registry: str) -> None:
    logs: list[str] = []
    result = release(request(registry, version="2"), log=logs.append, run=cloud.cdk)
    assert champion(registry) == "2" and result.promoted == {"champion": ("1", "2")}
    ctx = result.context
    assert ctx["stage"] == "dev" and ctx["model_name"] == NAME and ctx["model_version"] == "2"
    assert ctx["model_uri"] == f"s3://{BUCKET}/models/{NAME}/{ctx['model_sha256']}/model"
    manifest_key = f"models/{NAME}/{ctx['model_sha256']}/{MANIFEST}"
    manifest = json.loads(cloud.aws.s3.get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read())
    assert manifest["source"]["registered_version"] == "2" and manifest["sha256"] == ctx["model_sha256"]
    (argv,) = cloud.deploys
    assert argv[:4] == ["npx", "--no-install", "cdk", "deploy"] and argv[4] == "ServingKit-dev"
    assert f"model_sha256={ctx['model_sha256']}" in argv and argv[-2:] == ["--require-approval", "never"]
    assert sorted((d.group, d.status) for d in result.deployments) == [
        ("ApiDeployment", "Succeeded"),
        ("ScorerDeployment", "Succeeded"),
    ]
    # The monitoring reference the manifest pins goes with it (a stage with -c monitoring=true needs it).
    reference = manifest["reference"]
    if reference:
        assert (ctx["model_reference_uri"], ctx["model_reference_sha256"]) == (reference["uri"], reference["sha256"])
    else:
        assert "model_reference_uri" not in ctx
    # What the pull request's diff reads back, without writing: the model's context, in the stage's bucket.
    model_keys = ("model_uri", "model_sha256", "model_name", "model_version")
    assert registry_context(NAME, "champion", bucket=BUCKET, tracking_uri=registry) == {k: ctx[k] for k in model_keys}


def test_a_rolled_back_release_fails_and_the_alias_returns(cloud: Cloud, registry: str) -> None:
    cloud.outcome = "Failed"
    logs: list[str] = []
    with pytest.raises(ReleaseError, match=r"^rolled back: .*Deployment deployment .* Failed"):
        release(request(registry, version="2"), log=logs.append, run=cloud.cdk)
    assert champion(registry) == "1"  # the registry says what serves
    assert logs[-1] == f"{NAME}@champion: back to 1 (what the stage serves)"


def test_a_code_deploy_releases_the_alias_as_it_stands(cloud: Cloud, registry: str) -> None:
    first = release(request(registry), log=lambda _: None, run=cloud.cdk)
    again = release(request(registry), log=lambda _: None, run=cloud.cdk)
    assert first.promoted == {} and first.context == again.context and first.context["model_version"] == "1"


def test_registry_context_refuses_a_version_never_published(registry: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(registry, registry)
    client.set_registered_model_alias(NAME, "challenger", "2")
    client.delete_model_version_tag(NAME, "2", "servingkit.model_uri")
    try:
        with pytest.raises(ReleaseError, match=r"tiny-release@challenger \(version 2\) was never published"):
            registry_context(NAME, "challenger", tracking_uri=registry)
    finally:
        client.delete_registered_model_alias(NAME, "challenger")


def test_cli_release_context_prints_cdk_arguments(
    cloud: Cloud, registry: str, capsys: pytest.CaptureFixture[str]
) -> None:
    release(request(registry), log=lambda _: None, run=cloud.cdk)
    capsys.readouterr()
    assert run_cli(["release", "context", NAME, "--bucket", "other-bucket", "--json"]) == 0
    ctx = json.loads(capsys.readouterr().out)
    assert ctx["model_uri"].startswith(f"s3://other-bucket/models/{NAME}/") and ctx["model_version"] == "1"
    assert run_cli(["release", "context", NAME, "--alias", "challenger"]) == 1
    assert capsys.readouterr().err.startswith("error: cannot read tiny-release@challenger from the registry")


def test_missing_stack_is_one_clear_line(aws: Aws, registry: str, tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match=r"^no model bucket: ServingKit-dev has no ModelBucketName output"):
        release(request(registry), log=lambda _: None, run=lambda *a, **k: None)
