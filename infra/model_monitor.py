"""Prediction monitoring (issue 14): the monitoring bucket, the id-hashing key, the monitor function and its schedule.

On only with `-c monitoring=true`. The serving functions capture a sample and write per-batch profiles to
`<prefix>/capture/` and `<prefix>/profiles/` of the monitoring bucket; every `monitoring_schedule_minutes`
EventBridge Scheduler invokes the monitor (the same image, CMD `lambda_fn.handler.monitor_handler`), which
reads the profiles and the release's reference, writes `<prefix>/reports/` and publishes its metrics.
With `monitoring_labels=true` the monitor also joins the late labels under `<prefix>/labels/` with the capture
(model quality); `monitoring_labels_stream=true` adds a Kinesis labels stream and the function that files it there
(`infra/label_stream.py`). Alarms and dashboard widgets are `Monitoring.watch_models` (infra/monitoring.py).

A bucket of its own rather than a prefix of the model bucket: the model bucket is versioned (a rollback needs
the previous artifact), so expiring capture there would only turn objects into noncurrent versions kept 90
days; capture holds request data with its own retention and readers; and the serving roles can be allowed to
write here without any write right on the bucket their models are loaded from.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.environment import CaptureTarget, monitor_environment
from infra.functions import ImageFunction
from infra.label_stream import LabelStream
from infra.nag import acknowledge, acknowledge_resource
from infra.settings import DeploySettings, MonitoringSettings
from infra.topology import CAPTURE_DIR, HOURLY_DIR, LABELS_DIR, MONITOR_HANDLER, PROFILES_DIR, REPORTS_DIR
from lambda_fn.config import Metric

# One window's work is a few hundred milliseconds of numpy (docs/monitoring.md); the S3 reads of the long window
# dominate. Never longer than the schedule's period, so runs do not pile up.
MONITOR_MEMORY_MB = 1024
MONITOR_TIMEOUT_SECONDS = 300
# The schedule's input: the scheduled time is the window's end (lambda_fn.monitoring.job.event_time reads `at`).
SCHEDULE_GROUP = "default"
SCHEDULE_INPUT = json.dumps({"at": "<aws.scheduler.scheduled-time>"})


def rate_expression(minutes: int) -> str:
    return f"rate({minutes} minute{'' if minutes == 1 else 's'})"


class ModelMonitor(Construct):
    """Monitoring bucket (+ id key), the monitor function and its schedule; `grant_capture` for serving roles."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: DeploySettings,
        access_logs: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        m = settings.monitoring
        assert m is not None, "ModelMonitor needs monitoring settings"
        self.settings = m
        self.model_sha256 = settings.model.sha256
        self.bucket = self._bucket(m, access_logs)
        self.id_key: secretsmanager.Secret | None = None
        if m.hash_ids:
            self.id_key = secretsmanager.Secret(
                self,
                "IdKey",
                description=f"{settings.topology.prefix}: key of the keyed hash that replaces ids in captured records",
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    password_length=64, exclude_punctuation=True, include_space=False
                ),
                removal_policy=RemovalPolicy.RETAIN,  # the capture it hashed outlives a stack
            )
            acknowledge(
                self.id_key,
                "AwsSolutions-SMG4",
                "The id-hashing key is not rotated on a schedule: a new key hashes the same id differently, so "
                "captured predictions would no longer join their late labels nor match across windows.",
            )
        self.function = ImageFunction.of_stack(
            self,
            "Monitor",
            settings=settings,
            name="monitor",
            description="Monitor windows: profiles and the release's reference -> drift, quality, report, metrics",
            handler=MONITOR_HANDLER,
            memory_mb=MONITOR_MEMORY_MB,
            timeout_seconds=min(MONITOR_TIMEOUT_SECONDS, 60 * m.schedule_minutes),
            environment=monitor_environment(
                settings,
                bucket=self.bucket.bucket_name,
                id_key_secret_arn=self.id_key.secret_arn if self.id_key and m.labels else None,
            ),
        )
        self._grant_monitor(self.function.role)
        if m.labels:
            self._grant_quality(self.function.role)
        self.schedule = self._schedule(settings.topology.prefix, m, self.function.function)
        self.labels: LabelStream | None = (
            LabelStream(self, "LabelStream", settings=settings, bucket=self.bucket) if m.labels_stream else None
        )

    @property
    def capture_target(self) -> CaptureTarget:
        """What the serving functions' environment names: the bucket, and the id key's secret when hashing."""
        return CaptureTarget(self.bucket.bucket_name, self.id_key.secret_arn if self.id_key else None)

    def path(self, directory: str) -> str:
        return f"{self.settings.prefix}/{directory}"

    @property
    def reports_uri(self) -> str:
        """Where this model's window reports go (then date=/hour=/end=<stamp>/report.html)."""
        m = self.settings
        model = quote(m.model_name, safe="-_.~")  # a Hive partition value, as lambda_fn.monitoring.capture writes it
        return f"s3://{self.bucket.bucket_name}/{self.path(REPORTS_DIR)}/model={model}/sha256={self.model_sha256}/"

    def _bucket(self, m: MonitoringSettings, access_logs: s3.IBucket) -> s3.Bucket:
        # Encrypted, private, SSL only and logged like the model bucket (S3-managed keys, the same access-log
        # bucket); not versioned: capture is append-only and expires.
        bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix=f"{m.prefix}/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="capture", prefix=f"{m.prefix}/{CAPTURE_DIR}/", expiration=Duration.days(m.capture_days)
                ),
                s3.LifecycleRule(
                    id="profiles", prefix=f"{m.prefix}/{PROFILES_DIR}/", expiration=Duration.days(m.capture_days)
                ),
                s3.LifecycleRule(
                    id="profiles-hourly", prefix=f"{m.prefix}/{HOURLY_DIR}/", expiration=Duration.days(m.capture_days)
                ),
                s3.LifecycleRule(
                    id="reports", prefix=f"{m.prefix}/{REPORTS_DIR}/", expiration=Duration.days(m.report_days)
                ),
                s3.LifecycleRule(
                    id="labels", prefix=f"{m.prefix}/{LABELS_DIR}/", expiration=Duration.days(m.label_days)
                ),
                s3.LifecycleRule(id="multipart", abort_incomplete_multipart_upload_after=Duration.days(1)),
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        return bucket

    def _grant_monitor(self, role: iam.Role) -> None:
        """Read the profiles and the reference, write the reports, publish metrics in the kit's namespace only."""
        profiles, reports, hourly = self.path(PROFILES_DIR), self.path(REPORTS_DIR), self.path(HOURLY_DIR)
        # Hourly profiles: the monitor writes and reads its own merges of the per-batch ones (it never deletes).
        # With labels, the quality job also lists and reads the capture and the labels (read-only).
        reads = [profiles, hourly]
        reads += [self.path(CAPTURE_DIR), self.path(LABELS_DIR)] if self.settings.labels else []
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{p}/*" for p in reads]}},
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[*(self.bucket.arn_for_objects(f"{p}/*") for p in reads), self._reference_arn()],
            )
        )
        writes = [self.bucket.arn_for_objects(f"{reports}/*"), self.bucket.arn_for_objects(f"{hourly}/*")]
        role.add_to_principal_policy(iam.PolicyStatement(actions=["s3:PutObject"], resources=writes))
        acknowledge_resource(
            role,
            self.bucket.arn_for_objects(f"{profiles}/*"),
            "The monitor reads the profiles the serving functions write, one object per batch: only under profiles/.",
        )
        acknowledge_resource(
            role,
            self.bucket.arn_for_objects(f"{reports}/*"),
            "Each window writes its summary and reports under a new key: only under reports/.",
        )
        acknowledge_resource(
            role,
            self.bucket.arn_for_objects(f"{hourly}/*"),
            "The monitor writes and reads one merged profile per variant and hour: only under profiles-hourly/.",
        )
        # PutMetricData has no resource-level permission: a policy of its own, so its acknowledgment is its own,
        # and the namespace condition keeps it to the kit's metrics.
        metrics = iam.Policy(
            self,
            "MonitorMetrics",
            statements=[
                iam.PolicyStatement(
                    actions=["cloudwatch:PutMetricData"],
                    resources=["*"],
                    conditions={"StringEquals": {"cloudwatch:namespace": Metric.NAMESPACE}},
                )
            ],
            roles=[role],
        )
        acknowledge(
            metrics,
            "AwsSolutions-IAM5[Resource::*]",
            f"cloudwatch:PutMetricData supports no resource-level permission; limited to namespace {Metric.NAMESPACE}.",
        )

    def _grant_quality(self, role: iam.Role) -> None:
        """The quality job reads the capture and the labels (granted with the profiles) and the id key if any."""
        for directory, what in ((CAPTURE_DIR, "captured predictions"), (LABELS_DIR, "labels")):
            acknowledge_resource(
                role,
                self.bucket.arn_for_objects(f"{self.path(directory)}/*"),
                f"The quality job reads the {what} of its window, many objects under one prefix: read-only.",
            )
        if self.id_key is not None:
            role.add_to_principal_policy(
                iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=[self.id_key.secret_arn])
            )

    def grant_capture(self, role: iam.Role) -> None:
        """A serving function: write capture and profiles (no read, no delete), read the reference, the id key."""
        capture, profiles = self.path(CAPTURE_DIR), self.path(PROFILES_DIR)
        writes = [self.bucket.arn_for_objects(f"{capture}/*"), self.bucket.arn_for_objects(f"{profiles}/*")]
        role.add_to_principal_policy(iam.PolicyStatement(actions=["s3:PutObject"], resources=writes))
        role.add_to_principal_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=[self._reference_arn()]))
        if self.id_key is not None:
            role.add_to_principal_policy(
                iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=[self.id_key.secret_arn])
            )
        for arn in writes:
            acknowledge_resource(
                role,
                arn,
                "Capture and profiles are new objects per batch under partitioned keys: write-only, under one prefix.",
            )

    def _reference_arn(self) -> str:
        ref = self.settings.reference
        return f"arn:{Stack.of(self).partition}:s3:::{ref.bucket}/{ref.key}"

    def _schedule(self, prefix: str, m: MonitoringSettings, function: lambda_.IFunction) -> scheduler.CfnSchedule:
        """EventBridge Scheduler → the monitor, every `schedule_minutes`; its role may invoke that function only."""
        stack = Stack.of(self)
        name = f"{prefix}-monitor"
        role = iam.Role(
            self,
            "SchedulerRole",
            description=f"{name}: EventBridge Scheduler invokes the monitor function",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                # Scheduler's source ARN is the schedule group's (docs: confused deputy prevention), here the default.
                conditions={
                    "StringEquals": {
                        "aws:SourceAccount": stack.account,
                        "aws:SourceArn": f"arn:{stack.partition}:scheduler:{stack.region}:{stack.account}"
                        f":schedule-group/{SCHEDULE_GROUP}",
                    }
                },
            ),
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[function.function_arn])
        )
        period = 60 * m.schedule_minutes
        schedule = scheduler.CfnSchedule(
            self,
            "Schedule",
            name=name,
            group_name=SCHEDULE_GROUP,
            description=f"Every {m.schedule_minutes} min: one monitor window ending at the scheduled time",
            schedule_expression=rate_expression(m.schedule_minutes),
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            state="ENABLED",
            target=scheduler.CfnSchedule.TargetProperty(
                arn=function.function_arn,
                role_arn=role.role_arn,
                input=SCHEDULE_INPUT,
                # A missed window is retried until the next one is due, then left to backfill.
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                    maximum_event_age_in_seconds=max(60, min(period, 86_400)), maximum_retry_attempts=2
                ),
            ),
        )
        return schedule
