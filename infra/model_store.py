"""Model store: the versioned, encrypted S3 bucket the functions load models from, and its access logs."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.nag import acknowledge, acknowledge_resource
from infra.settings import ModelRef


class ModelStore(Construct):
    """S3 bucket for model artifacts (versioned so a sha256-pinned URI can be rolled back) plus its log bucket."""

    def __init__(self, scope: Construct, construct_id: str, *, log_retention_days: int) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(max(log_retention_days, 90)))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            self.access_logs,
            "AwsSolutions-S1",
            "This is the access-log destination itself; logging it into itself would loop.",
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            versioned=True,
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="models/",
            # Old versions stay restorable for a while, then expire: a rollback needs the previous artifact.
            lifecycle_rules=[s3.LifecycleRule(noncurrent_version_expiration=Duration.days(90))],
            removal_policy=RemovalPolicy.RETAIN,
        )

    def grant_read_models(self, grantee: iam.Role, refs: list[ModelRef]) -> None:
        """Read access to exactly these artifacts: the object (file) or the objects under the prefix (MLflow dir)."""
        objects: list[str] = []
        listings: dict[str, set[str]] = {}
        stack = Stack.of(self)
        for ref in refs:
            bucket_arn = self.bucket.bucket_arn if ref.bucket is None else f"arn:{stack.partition}:s3:::{ref.bucket}"
            objects += [f"{bucket_arn}/{ref.key}", f"{bucket_arn}/{ref.key}/*"]
            listings.setdefault(bucket_arn, set()).update((ref.key, f"{ref.key}/*"))
            acknowledge_resource(
                grantee,
                f"{bucket_arn}/{ref.key}/*",
                "An MLflow model is a directory: reading it needs the objects under this one model's prefix, no more.",
            )
        grantee.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:GetObject", "s3:GetObjectVersion"], resources=objects)
        )
        for bucket_arn, prefixes in listings.items():
            grantee.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["s3:ListBucket"],
                    resources=[bucket_arn],
                    conditions={"StringLike": {"s3:prefix": sorted(prefixes)}},
                )
            )
