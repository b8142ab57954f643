"""EMR Serverless batch scoring construct: application, least-privilege job role, code assets, nag-clean."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.node import prefer_wheel_node


@pytest.fixture(scope="module")
def template() -> Any:
    prefer_wheel_node()
    from aws_cdk import App, Stack, Validations
    from aws_cdk import aws_s3 as s3
    from aws_cdk.assertions import Template
    from cdk_nag import AwsSolutionsChecks

    from infra.batch_emr import BatchScoringJob

    app = App()
    stack = Stack(app, "BatchTest")
    data = s3.Bucket.from_bucket_name(stack, "Data", "rides-data")
    models = s3.Bucket.from_bucket_name(stack, "Models", "rides-models")
    BatchScoringJob(
        stack,
        "Batch",
        input_bucket=data,
        input_prefix="rides/",
        output_bucket=data,
        output_prefix="/scored/",
        model_bucket=models,
        model_prefix="models/taxi",
        python_env_bucket=models,
        python_env_key="envs/batch-py311.tar.gz",
    )
    # Any unacknowledged AwsSolutions finding fails synthesis, as in app.py.
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    app.synth()
    return Template.from_stack(stack)


def statements(template: Any) -> list[dict[str, Any]]:
    policies = template.find_resources("AWS::IAM::Policy")
    return [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]]


def by_sid(template: Any) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in statements(template)}


def text(value: Any) -> str:
    return json.dumps(value)


def test_spark_application_starts_on_demand_and_stops_when_idle(template: Any) -> None:
    from aws_cdk.assertions import Match

    template.resource_count_is("AWS::EMRServerless::Application", 1)
    template.has_resource_properties(
        "AWS::EMRServerless::Application",
        {
            "Type": "SPARK",
            "ReleaseLabel": "emr-spark-8.0.0",
            "AutoStartConfiguration": {"Enabled": True},
            "AutoStopConfiguration": {"Enabled": True, "IdleTimeoutMinutes": 15},
            "MaximumCapacity": {"Cpu": "32 vCPU", "Memory": "128 GB"},
            "MonitoringConfiguration": {
                "CloudWatchLoggingConfiguration": Match.object_like(
                    {"Enabled": True, "LogGroupName": Match.any_value()}
                )
            },
        },
    )


def test_job_role_is_assumable_only_by_this_application(template: Any) -> None:
    (role,) = template.find_resources("AWS::IAM::Role").values()
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "emr-serverless.amazonaws.com"}
    assert "aws:SourceAccount" in trust["Condition"]["StringEquals"]
    assert "Fn::GetAtt" in text(trust["Condition"]["ArnLike"]["aws:SourceArn"])
    assert "ManagedPolicyArns" not in role["Properties"]


def test_job_role_reads_input_and_model_and_writes_only_the_output_prefix(template: Any) -> None:
    sids = by_sid(template)
    assert ':s3:::rides-data/rides/*"' in text(sids["ReadInput"]["Resource"])
    assert ':s3:::rides-models/models/taxi/*"' in text(sids["ReadModel"]["Resource"])
    assert sids["ListInput"]["Condition"] == {"StringLike": {"s3:prefix": ["rides", "rides/*"]}}
    write = sids["WriteOutput"]
    assert sorted(write["Action"]) == ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:PutObject"]
    assert ':s3:::rides-data/scored/*"' in text(write["Resource"])
    # Nothing else may write, and no statement grants a service-wide wildcard action.
    writers = [s for s in statements(template) if "s3:PutObject" in text(s["Action"])]
    assert writers == [write]
    assert not [s for s in statements(template) if "*" in text(s["Action"])]
    assert [s["Sid"] for s in statements(template) if s["Resource"] == "*"] == ["FindLogGroup"]


def test_job_code_and_python_environment_are_readable_assets(template: Any) -> None:
    code = by_sid(template)["JobCode"]
    assert code["Action"] == "s3:GetObject"
    resources = text(code["Resource"])
    assert resources.count(".py") == 1 and resources.count(".zip") == 1
    assert "rides-models/envs/batch-py311.tar.gz" in resources
    outputs = template.to_json()["Outputs"]
    submit = next(v for k, v in outputs.items() if k.startswith("BatchSparkSubmitParameters"))
    rendered = text(submit["Value"])
    assert "--py-files " in rendered and "s3://cdk-" in rendered and ".zip" in rendered
    assert "spark.archives=s3://rides-models/envs/batch-py311.tar.gz#environment" in rendered
    assert "spark.executorEnv.PYSPARK_PYTHON=./environment/bin/python" in rendered
    assert {k.rstrip("0123456789ABCDEF").removeprefix("Batch") for k in outputs} >= {
        "ApplicationId",
        "JobRoleArn",
        "EntryPoint",
        "LogGroupName",
    }


def test_job_writes_logs_only_to_its_log_group(template: Any) -> None:
    logs = by_sid(template)["Logs"]
    assert sorted(logs["Action"]) == ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"]
    assert "Fn::GetAtt" in text(logs["Resource"])
    template.resource_count_is("AWS::Logs::LogGroup", 1)


def test_props_are_checked() -> None:
    prefer_wheel_node()
    from aws_cdk import App, Stack
    from aws_cdk import aws_s3 as s3

    from infra.batch_emr import BatchScoringJob

    stack = Stack(App(), "Bad")
    bucket = s3.Bucket.from_bucket_name(stack, "B", "some-bucket")
    common: dict[str, Any] = dict(input_bucket=bucket, output_bucket=bucket, model_bucket=bucket, model_prefix="m")
    with pytest.raises(ValueError, match="prefix"):
        BatchScoringJob(stack, "J1", input_prefix="*", output_prefix="out", **common)
    with pytest.raises(ValueError, match="go together"):
        BatchScoringJob(stack, "J2", input_prefix="in", output_prefix="out", python_env_key="env.tgz", **common)
    with pytest.raises(TypeError):
        BatchScoringJob(stack, "J3", bucket, "in", bucket, "out", bucket, "m")  # type: ignore[misc]
