"""Optional EMR Serverless batch scoring: the same Spark job as `servingkit batch --engine spark`.

One construct: an EMR Serverless Spark application that starts on job submission and stops when idle,
a job role that can read the input prefix and the model, write the output prefix and its own logs and
nothing else, and the job's code in S3 as assets (the entry script, and `lambda_fn` + `servingkit` as
a `--py-files` zip). Jobs are started with `aws emr-serverless start-job-run` (docs/batch.md); there is
no scheduler here: use EventBridge Scheduler or Step Functions' EMR Serverless integration if needed.
The serving stack adds it with `-c batch_scoring=true` (infra/stack.py); another stack opts in with:

    BatchScoringJob(stack, "Batch", input_bucket=..., input_prefix="rides/", output_bucket=...,
                    output_prefix="scored/", model_bucket=models.bucket, model_prefix="models/taxi/")
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_emrserverless as emr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as assets
from constructs import Construct

from infra.nag import acknowledge, acknowledge_resource

ROOT = Path(__file__).resolve().parents[1]
ENTRY_SCRIPT = ROOT / "servingkit" / "jobs" / "batch_score.py"  # runs `servingkit batch`
CODE_PACKAGES = ("lambda_fn", "servingkit")
# Spark 4.0 and Python 3.11, like the kit's pinned pyspark and the Lambda image.
DEFAULT_RELEASE = "emr-spark-8.0.0"
PYTHON = "./environment/bin/python"


def _code_dir() -> str:
    """The packages the job imports, staged alone so the asset hash changes only when they do."""
    staging = Path(tempfile.mkdtemp(prefix="batch-code-"))
    for pkg in CODE_PACKAGES:
        shutil.copytree(ROOT / pkg, staging / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return str(staging)


def _prefix(value: str) -> str:
    value = value.strip("/")
    if not value or "*" in value:
        raise ValueError(f"prefix {value!r} must be a non-empty S3 key prefix without wildcards")
    return value


class BatchScoringJob(Construct):
    """EMR Serverless Spark application + least-privilege job role + the job's code, for offline scoring."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        input_bucket: s3.IBucket,
        input_prefix: str,
        output_bucket: s3.IBucket,
        output_prefix: str,
        model_bucket: s3.IBucket,
        model_prefix: str,
        python_env_bucket: s3.IBucket | None = None,
        python_env_key: str | None = None,
        release_label: str = DEFAULT_RELEASE,
        architecture: str = "X86_64",
        max_vcpu: int = 32,
        max_memory_gb: int = 128,
        idle_timeout_minutes: int = 15,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        super().__init__(scope, construct_id)
        if (python_env_bucket is None) != (python_env_key is None):
            raise ValueError("python_env_bucket and python_env_key go together (the packed virtualenv archive)")
        if architecture not in ("X86_64", "ARM64"):
            raise ValueError("architecture must be X86_64 or ARM64 (and match the virtualenv archive)")
        stack = Stack.of(self)
        self.input_prefix, self.output_prefix = _prefix(input_prefix), _prefix(output_prefix)
        self.model_prefix = _prefix(model_prefix)

        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
        self.application = emr.CfnApplication(
            self,
            "Application",
            release_label=release_label,
            type="SPARK",
            architecture=architecture,
            auto_start_configuration=emr.CfnApplication.AutoStartConfigurationProperty(enabled=True),
            auto_stop_configuration=emr.CfnApplication.AutoStopConfigurationProperty(
                enabled=True, idle_timeout_minutes=idle_timeout_minutes
            ),
            maximum_capacity=emr.CfnApplication.MaximumAllowedResourcesProperty(
                cpu=f"{max_vcpu} vCPU", memory=f"{max_memory_gb} GB"
            ),
            monitoring_configuration=emr.CfnApplication.MonitoringConfigurationProperty(
                cloud_watch_logging_configuration=emr.CfnApplication.CloudWatchLoggingConfigurationProperty(
                    enabled=True, log_group_name=self.log_group.log_group_name, log_stream_name_prefix="batch"
                )
            ),
        )

        self.entry = assets.Asset(self, "Entry", path=str(ENTRY_SCRIPT))
        self.code = assets.Asset(self, "Code", path=_code_dir())

        self.role = iam.Role(
            self,
            "JobRole",
            description="EMR Serverless batch scoring: read input and model, write output and logs",
            assumed_by=iam.ServicePrincipal(
                "emr-serverless.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {"aws:SourceArn": self.application.attr_arn},
                },
            ),
            max_session_duration=Duration.hours(12),
        )
        code_objects = [
            self.entry.bucket.arn_for_objects(self.entry.s3_object_key),
            self.code.bucket.arn_for_objects(self.code.s3_object_key),
        ]
        if python_env_bucket is not None and python_env_key is not None:
            code_objects.append(python_env_bucket.arn_for_objects(python_env_key.lstrip("/")))
        self.role.add_to_policy(iam.PolicyStatement(sid="JobCode", actions=["s3:GetObject"], resources=code_objects))
        self._read(input_bucket, self.input_prefix, "Input")
        self._read(model_bucket, self.model_prefix, "Model")
        self._read(output_bucket, self.output_prefix, "Output")  # Spark lists and reads its own output commits
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteOutput",
                actions=["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
                resources=[output_bucket.arn_for_objects(f"{self.output_prefix}/*")],
            )
        )
        for bucket in {id(b): b for b in (input_bucket, model_bucket, output_bucket)}.values():
            if bucket.encryption_key is not None:
                bucket.encryption_key.grant_decrypt(self.role)
        if output_bucket.encryption_key is not None:
            output_bucket.encryption_key.grant_encrypt_decrypt(self.role)
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="Logs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[self.log_group.log_group_arn, f"{self.log_group.log_group_arn}:*"],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(sid="FindLogGroup", actions=["logs:DescribeLogGroups"], resources=["*"])
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "logs:DescribeLogGroups has no resource-level permissions; EMR Serverless calls it to find its group.",
        )
        acknowledge_resource(
            self.role,
            f"{self.log_group.log_group_arn}:*",
            "Log streams of this one log group (the job creates one stream per driver and executor).",
        )

        self.spark_submit_parameters = self._submit_parameters(python_env_bucket, python_env_key)
        CfnOutput(self, "ApplicationId", value=self.application.attr_application_id)
        CfnOutput(self, "JobRoleArn", value=self.role.role_arn)
        CfnOutput(self, "EntryPoint", value=self.entry.s3_object_url)
        CfnOutput(self, "SparkSubmitParameters", value=self.spark_submit_parameters)
        CfnOutput(self, "LogGroupName", value=self.log_group.log_group_name)

    def _read(self, bucket: s3.IBucket, prefix: str, sid: str) -> None:
        """GetObject under the prefix and ListBucket limited to it: the bucket's other data stays out of reach."""
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid=f"Read{sid}", actions=["s3:GetObject"], resources=[bucket.arn_for_objects(f"{prefix}/*")]
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid=f"List{sid}",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}},
            )
        )
        acknowledge_resource(
            self.role,
            bucket.arn_for_objects(f"{prefix}/*"),
            f"Batch scoring reads or writes every object under the {sid.lower()} prefix {prefix!r}, and no other.",
        )

    def _submit_parameters(self, env_bucket: s3.IBucket | None, env_key: str | None) -> str:
        """`--py-files` for the kit's code, and the packed virtualenv (pandas, pyarrow, scikit-learn, skops)."""
        params = [f"--py-files {self.code.s3_object_url}"]
        if env_bucket is not None and env_key is not None:
            params += [
                f"--conf spark.archives=s3://{env_bucket.bucket_name}/{env_key.lstrip('/')}#environment",
                f"--conf spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON={PYTHON}",
                f"--conf spark.emr-serverless.driverEnv.PYSPARK_PYTHON={PYTHON}",
                f"--conf spark.executorEnv.PYSPARK_PYTHON={PYTHON}",
            ]
        return " ".join(params)
