"""The release hooks end to end on the emulator: a model published to moto S3 (its manifest recording the smoke
example), the serving handlers as the versions under test, moto CloudWatch for the post-traffic check."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from lambda_fn import runtime
from lambda_fn.release_checks import Clients, HookEnv, InvocationFailedError, run_hook
from servingkit.publish import publish
from tests.helpers import FakeContext, save_mlflow_model, tiny_frame, tiny_pipeline
from tests.integration.conftest import BUCKET, Aws

SCORER = "arn:aws:lambda:us-east-1:123456789012:function:serving-dev-scorer:2"
API = "arn:aws:lambda:us-east-1:123456789012:function:serving-dev-api:2"
EVENT = {"DeploymentId": "d-TEST", "LifecycleEventHookExecutionId": "exec-1"}


class RecordingCodeDeploy:
    """moto has no PutLifecycleEventHookExecutionStatus: record what the hook reports."""

    def __init__(self) -> None:
        self.reports: list[dict[str, str]] = []

    def put_lifecycle_event_hook_execution_status(self, **kwargs: str) -> None:
        self.reports.append(kwargs)

    def get_deployment(self, deploymentId: str) -> dict[str, Any]:  # boto3's names
        from datetime import UTC, datetime, timedelta

        return {"deploymentInfo": {"createTime": datetime.now(UTC) - timedelta(minutes=10)}}


def _invoker(functions: dict[str, Callable[[dict[str, Any], Any], Any]]) -> Callable[[str, dict[str, Any]], Any]:
    """The functions as Lambda would run them: the answer through JSON, an exception as a FunctionError."""

    def invoke(target: str, event: dict[str, Any]) -> Any:
        try:
            return json.loads(json.dumps(functions[target](event, FakeContext())))
        except Exception as exc:  # what Lambda reports as Unhandled
            raise InvocationFailedError(f"Unhandled: {type(exc).__name__}: {exc}") from None

    return invoke


@pytest.fixture
def released(aws: Aws, tmp_path: Path, clean_env: pytest.MonkeyPatch) -> dict[str, Any]:
    """A model with an input example, published as `servingkit publish` does, and the functions' environment."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    x, _ = tiny_frame(20)
    model = tiny_pipeline()
    path = tmp_path / "model"
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(x, model.predict(x)),
        input_example=x.head(4),
        serialization_format="skops",
        metadata={"name": "tiny"},
        pip_requirements=["scikit-learn", "skops"],
    )
    result = publish(str(path), BUCKET, s3=aws.s3, name="tiny", version="7")
    clean_env.setenv("MODEL_URI", result.model_uri)
    clean_env.setenv("MODEL_SHA256", result.sha256)
    clean_env.setenv("MODEL_NAME", "tiny")
    clean_env.setenv("MODEL_VERSION", "7")
    env = {
        HookEnv.SHA256: result.sha256,
        HookEnv.MODEL_NAME: "tiny",
        HookEnv.MODEL_VERSION: "7",
        HookEnv.MANIFEST_URI: result.manifest_uri,
    }
    return {"result": result, "env": env}


def _pre(env: dict[str, str], target: str, invoke: Any, s3: Any) -> tuple[dict[str, str], RecordingCodeDeploy]:
    codedeploy = RecordingCodeDeploy()
    answer = run_hook(EVENT, "pre", {**env, HookEnv.TARGET: target}, Clients(codedeploy, invoke=invoke, s3=s3))
    assert codedeploy.reports == [
        {"deploymentId": "d-TEST", "lifecycleEventHookExecutionId": "exec-1", "status": answer["status"]}
    ]
    return answer, codedeploy


def test_healthy_versions_of_both_functions_pass_and_the_smoke_test_writes_nothing(
    released: dict[str, Any], aws: Aws
) -> None:
    from lambda_fn import handler

    invoke = _invoker({SCORER: handler.stream_handler, API: handler.api_handler})
    for target in (SCORER, API):
        answer, _ = _pre(released["env"], target, invoke, aws.s3)
        assert answer["status"] == "Succeeded", answer
        assert "predicts the 4 recorded outputs" in answer["reason"]
    assert aws.output_records() == [] and aws.dead_letters() == []  # a smoke test is a dry run


def test_a_version_serving_another_model_fails(
    released: dict[str, Any], aws: Aws, tmp_path: Path, clean_env: Any
) -> None:
    from lambda_fn import handler

    other = save_mlflow_model(
        tmp_path / "other", tiny_pipeline().set_params(model__fit_intercept=False).fit(*tiny_frame())
    )
    wrong = publish(str(other), BUCKET, s3=aws.s3, name="tiny", version="7")
    clean_env.setenv("MODEL_URI", wrong.model_uri)
    clean_env.setenv("MODEL_SHA256", wrong.sha256)  # a deployment that got the wrong artifact, consistently pinned
    runtime.reset()
    answer, _ = _pre(released["env"], SCORER, _invoker({SCORER: handler.stream_handler}), aws.s3)
    assert answer["status"] == "Failed" and f"serves sha256 '{wrong.sha256}'" in answer["reason"]


def test_a_wrong_recorded_prediction_fails(released: dict[str, Any], aws: Aws) -> None:
    from lambda_fn import handler

    result = released["result"]
    manifest = json.loads(aws.s3.get_object(Bucket=BUCKET, Key=result.manifest_uri.split("/", 3)[3])["Body"].read())
    manifest["smoke"]["predictions"][2] += 1.0  # what publish recorded is not what this version predicts
    key = "models/tiny/tampered/release.json"
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(manifest).encode())
    env = {**released["env"], HookEnv.MANIFEST_URI: f"s3://{BUCKET}/{key}"}
    answer, _ = _pre(env, API, _invoker({API: handler.api_handler}), aws.s3)
    assert answer["status"] == "Failed" and ": prediction 2 is " in answer["reason"]


def test_a_version_that_cannot_load_its_model_fails(released: dict[str, Any], aws: Aws, clean_env: Any) -> None:
    from lambda_fn import handler

    clean_env.setenv("MODEL_SHA256", "0" * 64)  # the artifact is not the pinned one: the function refuses it
    runtime.reset()
    answer, _ = _pre(released["env"], SCORER, _invoker({SCORER: handler.stream_handler}), aws.s3)
    assert answer["status"] == "Failed" and "failed the smoke test" in answer["reason"]
    assert "checksum mismatch" in answer["reason"]


def test_post_traffic_reads_the_alarms_and_errors_from_cloudwatch(aws: Aws) -> None:
    cloudwatch = boto3.client("cloudwatch")
    for name in ("serving-dev-ScorerLiveErrors", "serving-dev-ApiLiveErrors"):
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            Namespace="AWS/Lambda",
            MetricName="Errors",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
    env = {HookEnv.FUNCTION_NAME: "serving-dev-api", HookEnv.ALIAS: "live", HookEnv.ALARMS: "serving-dev-ApiLiveErrors"}
    codedeploy = RecordingCodeDeploy()
    quiet = run_hook(EVENT, "post", env, Clients(codedeploy, cloudwatch=cloudwatch))
    assert quiet["status"] == "Succeeded", quiet
    cloudwatch.set_alarm_state(AlarmName="serving-dev-ApiLiveErrors", StateValue="ALARM", StateReason="test")
    firing = run_hook(EVENT, "post", env, Clients(codedeploy, cloudwatch=cloudwatch))
    assert firing["status"] == "Failed" and "serving-dev-ApiLiveErrors" in firing["reason"]
    assert [r["status"] for r in codedeploy.reports] == ["Succeeded", "Failed"]
