"""The serving stack: one per stage, composed of one construct per concern."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import App, CfnOutput, Environment, Stack, Tags, Validations
from constructs import Construct

from infra.api import SyncApi
from infra.deployments import AliasDeployments
from infra.environment import api_environment, scorer_environment
from infra.functions import RETENTION, ServingFunction
from infra.image import API_HANDLER, STREAM_HANDLER
from infra.model_monitor import ModelMonitor
from infra.model_store import ModelStore
from infra.monitoring import Monitoring
from infra.settings import DeploySettings, deploy_settings
from infra.streams import Streams
from infra.topology import Ctx
from infra.trigger import StreamTrigger


class ServingStack(Stack):
    """Kinesis → scorer (live alias) → output stream / DLQ, plus the API, releases and monitoring."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: DeploySettings, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        s = settings
        topo = s.topology
        Tags.of(self).add("project", "serverless-model-serving-kit")
        Tags.of(self).add("stage", topo.stage)

        store = ModelStore(self, "ModelStore", log_retention_days=s.log_retention_days)
        streams = Streams(self, "Streams", topology=topo, shadow=s.shadow is not None)
        bucket = store.bucket.bucket_name
        # Prediction monitoring (-c monitoring=true): capture bucket, monitor function and schedule; else nothing.
        monitor = (
            ModelMonitor(self, "ModelMonitor", settings=s, access_logs=store.access_logs) if s.monitoring else None
        )
        capture = monitor.capture_target if monitor else None

        scorer = ServingFunction(
            self,
            "Scorer",
            function_name=f"{topo.prefix}-scorer",
            description="Scores Kinesis batches: one predict per batch, poison records to the DLQ",
            handler=STREAM_HANDLER,
            architecture=s.architecture,
            base_image=s.base_image,
            sizing=s.scorer,
            environment=scorer_environment(
                s,
                model_bucket=bucket,
                output_stream=streams.output.stream_name,
                dlq_url=streams.dlq.queue_url,
                shadow_stream=streams.shadow.stream_name if streams.shadow else None,
                capture=capture,
            ),
            log_retention_days=s.log_retention_days,
        )
        api_fn = ServingFunction(
            self,
            "ApiFunction",
            function_name=f"{topo.prefix}-api",
            description="Synchronous predictions behind API Gateway (no stream or queue rights)",
            handler=API_HANDLER,
            architecture=s.architecture,
            base_image=s.base_image,
            sizing=s.api,
            environment=api_environment(s, model_bucket=bucket, capture=capture),
            log_retention_days=s.log_retention_days,
            provisioned_concurrency=s.api_provisioned_concurrency,
        )
        # Grants: each function gets exactly what its handler calls.
        for fn in (scorer, api_fn):
            store.grant_read_models(fn.role, s.models())
            if monitor is not None:
                monitor.grant_capture(fn.role)
        streams.output.grant_write(scorer.role)
        if streams.shadow is not None:
            streams.shadow.grant_write(scorer.role)
        streams.dlq.grant_send_messages(scorer.role)

        StreamTrigger(
            self,
            "Trigger",
            target=scorer.alias,
            stream=streams.input,
            on_failure=streams.on_failure,
            spec=topo.trigger,
        )
        api = SyncApi(
            self,
            "Api",
            target=api_fn.alias,
            api_name=topo.prefix,
            stage_name=topo.stage,
            auth=s.api_auth,
            rate_limit=s.api_rate_limit,
            burst_limit=s.api_burst_limit,
            quota_per_day=s.api_quota_per_day,
            log_retention_days=s.log_retention_days,
        )

        monitoring = Monitoring(
            self,
            "Monitoring",
            prefix=topo.prefix,
            service=topo.prefix,
            alarm_email=s.alarm_email,
            enabled=s.alarms,
        )
        monitoring.watch(
            scorer=scorer.function,
            api_function=api_fn.function,
            dlq=streams.dlq,
            on_failure=streams.on_failure,
            api=api.api,
            iterator_age_seconds=s.iterator_age_alarm_seconds,
            api_p99_ms=s.api_p99_alarm_ms,
        )
        deployments = AliasDeployments(self, "Release", application_name=topo.prefix, settings=s, model_bucket=bucket)
        groups = {}
        for name, fn in (("Scorer", scorer), ("Api", api_fn)):
            rollback = monitoring.alarm(
                f"{name}LiveErrors",
                fn.alias.metric_errors(statistic="Sum"),
                threshold=1,
                description=f"Errors on the {name.lower()}'s live alias: rolls back a deployment in progress.",
            )
            groups[name] = deployments.add(f"{name}Deployment", fn, [rollback] if rollback else [])

        if s.batch_scoring:
            # Offline scoring with the same core on EMR Serverless; datasets live under batch/ in the
            # (versioned, encrypted, logged) model bucket, models under models/ (where publish puts them).
            from infra.batch_emr import BatchScoringJob

            BatchScoringJob(
                self,
                "BatchScoring",
                input_bucket=store.bucket,
                input_prefix="batch/input/",
                output_bucket=store.bucket,
                output_prefix="batch/output/",
                model_bucket=store.bucket,
                model_prefix="models/",
                architecture="ARM64" if s.architecture == "arm64" else "X86_64",
                log_retention=RETENTION[s.log_retention_days],
            )

        outputs = {
            "InputStreamName": streams.input.stream_name,
            "OutputStreamName": streams.output.stream_name,
            "ApiUrl": api.api.url,
            "ModelBucketName": bucket,
            "DeadLetterQueueUrl": streams.dlq.queue_url,
            "BatchFailureQueueUrl": streams.on_failure.queue_url,
            "DashboardName": topo.prefix,
            "ScorerFunctionName": scorer.function.function_name,
            "ApiFunctionName": api_fn.function.function_name,
            "DeploymentApplication": deployments.application.application_name,
            # `aws deploy list-deployments` needs the group as well as the application.
            "ScorerDeploymentGroup": groups["Scorer"].deployment_group_name,
            "ApiDeploymentGroup": groups["Api"].deployment_group_name,
            "ModelUri": s.model.env_uri(bucket),
        }
        if streams.shadow is not None:
            outputs["ShadowStreamName"] = streams.shadow.stream_name
        if api.api_key is not None:
            outputs["ApiKeyId"] = api.api_key.key_id
        if api.invoke_policy is not None:
            outputs["ApiInvokePolicyArn"] = api.invoke_policy.managed_policy_arn
        if monitoring.topic is not None:
            outputs["AlarmTopicArn"] = monitoring.topic.topic_arn
        if monitor is not None:
            outputs.update(_watch_models(monitor, monitoring))
        for key, value in outputs.items():
            CfnOutput(self, key, value=value)


def _watch_models(monitor: ModelMonitor, monitoring: Monitoring) -> dict[str, str]:
    """The monitor's alarms and widgets; its outputs."""
    m = monitor.settings
    reports = monitor.reports_uri
    monitoring.watch_models(
        monitor_function=monitor.function.function,
        model_name=m.model_name,
        variants=m.variants,
        schedule_minutes=m.schedule_minutes,
        drift_alarm_features=m.drift_alarm_features,
        quality_alarm_violations=m.quality_alarm_violations,
        reports=reports,
        quality_degradation_ratio=m.quality_degradation_ratio if m.labels else None,
        quality_min_labels=m.quality_min_labels,
        labels_failures=monitor.labels.on_failure if monitor.labels is not None else None,
    )
    outputs = {
        "MonitoringBucketName": monitor.bucket.bucket_name,
        "MonitorFunctionName": monitor.function.function.function_name,
        "MonitorReports": reports,
    }
    if monitor.labels is not None:
        outputs["LabelsStreamName"] = monitor.labels.stream.stream_name
    return outputs


def build_app(context: Mapping[str, Any] | None = None, *, nag: bool = True, outdir: str | None = None) -> App:
    """The CDK app: `app.py` calls this with cdk.json's context; tests call it with their own."""
    app = App(context={**cdk_json_context(), **(context or {})}, outdir=outdir)
    keys = [value for name, value in vars(Ctx).items() if not name.startswith("_")]
    ctx = {key: app.node.try_get_context(key) for key in keys}
    settings = deploy_settings({k: v for k, v in ctx.items() if v is not None})
    stage = settings.topology.stage
    ServingStack(
        app,
        f"ServingKit-{stage}",
        settings=settings,
        description=f"Serverless model serving kit ({stage}): Kinesis and API Gateway to a container-image Lambda",
        env=_environment(),
    )
    if nag:
        from cdk_nag import AwsSolutionsChecks

        # Any unacknowledged finding fails synthesis; acknowledgments are written into the template (audit trail).
        checks = AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True)
        Validations.of(app).add_plugins(checks)
    return app


def cdk_json_context() -> dict[str, Any]:
    """cdk.json's context (feature flags, stage): the CLI passes it too; tests and scripts get the same."""
    path = Path(__file__).resolve().parents[1] / "cdk.json"
    context: dict[str, Any] = json.loads(path.read_text()).get("context", {})
    return context


def _environment() -> Environment | None:
    """Account/region from the CLI's profile when deploying; environment-agnostic otherwise (synth offline)."""
    account, region = os.environ.get("CDK_DEFAULT_ACCOUNT"), os.environ.get("CDK_DEFAULT_REGION")
    return Environment(account=account, region=region) if account and region else None
