"""Monitoring: alarms (to an encrypted SNS topic) and a dashboard of the kit's own metrics, and, with prediction
monitoring on, the monitor's drift and quality alarms and widgets (`watch_models`)."""

from __future__ import annotations

from collections.abc import Callable

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.topology import CAPTURE_ERRORS_METRIC, PSI_ALERT, PSI_WARN
from lambda_fn.config import Metric

ONE_MINUTE = Duration.minutes(1)
# Metric math ids of the QualityDegradation alarm (lower-case first, as CloudWatch requires).
DEGRADATION_ID, LABELLED_ID = "degradation", "labelled"


def degradation_expression(min_labels: int) -> str:
    """The degradation ratio, or 0 when the window joined fewer than `min_labels` labels (the ratio is then noise)."""
    return f"IF({LABELLED_ID} >= {min_labels}, {DEGRADATION_ID}, 0)"


def gated_degradation(
    model_metric: Callable[[str, str], cloudwatch.Metric], variant: str, min_labels: int, period: Duration
) -> cloudwatch.MathExpression:
    """`QualityDegradation` gated by `LabelledRows` of the same run (both published with one timestamp)."""
    return cloudwatch.MathExpression(
        expression=degradation_expression(min_labels),
        using_metrics={
            DEGRADATION_ID: model_metric(Metric.QUALITY_DEGRADATION, variant),
            LABELLED_ID: model_metric(Metric.LABELLED_ROWS, variant),
        },
        label=f"degradation with >= {min_labels} labels ({variant})",
        period=period,
    )


class Monitoring(Construct):
    """Alarms a user acts on, and a dashboard that shows records in, scored, dead-lettered, and latencies."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        service: str,
        alarm_email: str | None,
        enabled: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.prefix = prefix
        self.service = service
        self.enabled = enabled
        self.alarms: list[cloudwatch.Alarm] = []
        self.topic: sns.Topic | None = None
        if enabled:
            stack = Stack.of(self)
            # Only this account's alarms (no confused deputy through the CloudWatch service principal).
            from_our_alarms = {
                "StringEquals": {"aws:SourceAccount": stack.account},
                "ArnLike": {
                    "aws:SourceArn": f"arn:{stack.partition}:cloudwatch:{stack.region}:{stack.account}:alarm:*"
                },
            }
            cloudwatch_service = iam.ServicePrincipal("cloudwatch.amazonaws.com")
            # CloudWatch cannot publish to a topic under the AWS-managed SNS key: a customer key that allows it.
            key = kms.Key(self, "AlarmKey", enable_key_rotation=True, description=f"{prefix} alarm topic")
            key.add_to_resource_policy(
                iam.PolicyStatement(
                    actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                    principals=[cloudwatch_service],
                    resources=["*"],  # in a key policy "*" means this key
                    conditions=from_our_alarms,
                )
            )
            self.topic = sns.Topic(self, "Alarms", display_name=f"{prefix} alarms", master_key=key, enforce_ssl=True)
            # enforce_ssl gives the topic an explicit policy, which replaces SNS's default: allow the alarms back in.
            self.topic.add_to_resource_policy(
                iam.PolicyStatement(
                    actions=["sns:Publish"],
                    principals=[cloudwatch_service],
                    resources=[self.topic.topic_arn],
                    conditions=from_our_alarms,
                )
            )
            if alarm_email:
                self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=prefix)

    def kit_metric(self, name: str, statistic: str = "Sum") -> cloudwatch.Metric:
        """A metric the handlers emit (EMF, namespace `ServingKit`, dimension service=<stage prefix>)."""
        return cloudwatch.Metric(
            namespace=Metric.NAMESPACE,
            metric_name=name,
            dimensions_map={"service": self.service},
            statistic=statistic,
            period=ONE_MINUTE,
        )

    def alarm(
        self,
        construct_id: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        description: str,
        periods: int = 1,
        comparison: cloudwatch.ComparisonOperator = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    ) -> cloudwatch.Alarm | None:
        if not self.enabled:
            return None
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            alarm_name=f"{self.prefix}-{construct_id}",
            alarm_description=description,
            threshold=threshold,
            evaluation_periods=periods,
            comparison_operator=comparison,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        if self.topic is not None:
            alarm.add_alarm_action(actions.SnsAction(self.topic))
            alarm.add_ok_action(actions.SnsAction(self.topic))
        self.alarms.append(alarm)
        return alarm

    def watch(
        self,
        *,
        scorer: lambda_.Function,
        api_function: lambda_.Function,
        dlq: sqs.IQueue,
        on_failure: sqs.IQueue,
        api: apigw.RestApi,
        iterator_age_seconds: int,
        api_p99_ms: int,
    ) -> None:
        iterator_age = scorer.metric("IteratorAge", statistic="Maximum", period=ONE_MINUTE)
        self.alarm(
            "IteratorAge",
            iterator_age,
            threshold=iterator_age_seconds * 1000,
            periods=3,
            description="The scorer is falling behind the input stream (oldest record age, 3 minutes in a row).",
        )
        for label, fn in (("Scorer", scorer), ("Api", api_function)):
            self.alarm(
                f"{label}Errors",
                fn.metric_errors(period=ONE_MINUTE, statistic="Sum"),
                threshold=1,
                description=f"The {label.lower()} function failed invocations (see its log group).",
            )
            self.alarm(
                f"{label}Throttles",
                fn.metric_throttles(period=ONE_MINUTE, statistic="Sum"),
                threshold=1,
                description=f"The {label.lower()} function was throttled (concurrency limits).",
            )
        self.alarm(
            "DeadLetters",
            dlq.metric_approximate_number_of_messages_visible(period=ONE_MINUTE, statistic="Maximum"),
            threshold=1,
            description="Records were dead-lettered (invalid payloads or model rejections): inspect the DLQ.",
        )
        self.alarm(
            "DeadLettersRejected",
            self.kit_metric(Metric.DEAD_LETTERS_REJECTED),
            threshold=1,
            description=(
                "SQS refused dead letters; minimal ones (each record's position and sha256, no data) went instead: "
                "read those records from the input stream before its retention ends."
            ),
        )
        self.alarm(
            "BatchFailures",
            on_failure.metric_approximate_number_of_messages_visible(period=ONE_MINUTE, statistic="Maximum"),
            threshold=1,
            description="The event source gave up on a batch (retries or record age exhausted): records to replay.",
        )
        self.alarm(
            "Api5xx",
            api.metric_server_error(period=ONE_MINUTE, statistic="Sum"),
            threshold=1,
            description="The API answered 5xx (model not loadable, function errors or timeouts).",
        )
        self.alarm(
            "ApiLatencyP99",
            api.metric_latency(period=ONE_MINUTE, statistic="p99"),
            threshold=api_p99_ms,
            periods=3,
            description=f"API p99 latency above {api_p99_ms} ms for 3 minutes.",
        )
        self._dashboard(scorer, api_function, dlq, on_failure, api, iterator_age)

    def _dashboard(
        self,
        scorer: lambda_.Function,
        api_function: lambda_.Function,
        dlq: sqs.IQueue,
        on_failure: sqs.IQueue,
        api: apigw.RestApi,
        iterator_age: cloudwatch.IMetric,
    ) -> None:
        k = self.kit_metric
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Records per minute",
                left=[
                    k(Metric.RECORDS_IN),
                    k(Metric.RECORDS_SCORED),
                    k(Metric.RECORDS_DEAD_LETTERED),
                    k(Metric.RECORDS_FAILED),
                    k(Metric.OUTPUT_RETRIES),
                    k(Metric.DEAD_LETTERS_REJECTED),
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Batch and predict latency (ms)",
                left=[
                    k(Metric.BATCH_LATENCY, "p50"),
                    k(Metric.BATCH_LATENCY, "p99"),
                    k(Metric.PREDICT_LATENCY, "p50"),
                    k(Metric.PREDICT_LATENCY, "p99"),
                ],
                right=[k(Metric.MODEL_LOAD_TIME, "Maximum")],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Scorer iterator age (ms)", left=[iterator_age], width=8),
            cloudwatch.GraphWidget(
                title="Queues (visible messages)",
                left=[
                    dlq.metric_approximate_number_of_messages_visible(period=ONE_MINUTE, statistic="Maximum"),
                    on_failure.metric_approximate_number_of_messages_visible(period=ONE_MINUTE, statistic="Maximum"),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Functions: errors and throttles",
                left=[
                    scorer.metric_errors(period=ONE_MINUTE),
                    api_function.metric_errors(period=ONE_MINUTE),
                    scorer.metric_throttles(period=ONE_MINUTE),
                    api_function.metric_throttles(period=ONE_MINUTE),
                ],
                width=8,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="API requests and errors",
                left=[api.metric_count(period=ONE_MINUTE), api.metric_server_error(period=ONE_MINUTE)],
                right=[api.metric_client_error(period=ONE_MINUTE)],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="API latency (ms)",
                left=[
                    api.metric_latency(period=ONE_MINUTE, statistic="p50"),
                    api.metric_latency(period=ONE_MINUTE, statistic="p99"),
                ],
                right=[api_function.metric_duration(period=ONE_MINUTE, statistic="p99")],
                width=12,
            ),
        )
        if self.alarms:
            self.dashboard.add_widgets(cloudwatch.AlarmStatusWidget(alarms=list(self.alarms), width=24, title="Alarms"))

    def watch_models(
        self,
        *,
        monitor_function: lambda_.IFunction,
        model_name: str,
        variants: tuple[str, ...],
        schedule_minutes: int,
        drift_alarm_features: int,
        quality_alarm_violations: int,
        reports: str,
        quality_degradation_ratio: float | None = None,
        quality_min_labels: int = 100,
        labels_failures: sqs.IQueue | None = None,
    ) -> None:
        """Prediction monitoring (issue 14): drift and quality alarms per variant, the monitor's errors, widgets.

        The monitor publishes one datapoint per metric and window (every `schedule_minutes`), so the alarms'
        period is that of the schedule; no datapoint (no run, or an insufficient window) is not breaching.
        `reports` is where the window reports are (s3://bucket/prefix), named in every alarm's description.
        With `quality_degradation_ratio` (model quality from late labels on), also a `QualityDegradation` alarm per
        variant above that ratio to the release's training metrics once the window has `quality_min_labels` labelled
        rows, and the quality widgets; with `labels_failures` (the labels stream's on-failure queue), an alarm on it.
        """
        period = Duration.minutes(schedule_minutes)

        def model_metric(name: str, variant: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=Metric.NAMESPACE,
                metric_name=name,
                dimensions_map={Metric.MODEL_DIMENSION: model_name, Metric.VARIANT_DIMENSION: variant},
                statistic="Maximum",
                period=period,
            )

        before = len(self.alarms)
        for variant in variants:
            self.alarm(
                f"DriftedFeatures-{variant}",
                model_metric(Metric.DRIFTED_FEATURES, variant),
                threshold=drift_alarm_features,
                description=(
                    f"{model_name} ({variant}): {drift_alarm_features} or more features (or the prediction) drifted "
                    f"past the alert level in the last window. Reports: {reports}"
                ),
            )
            self.alarm(
                f"QualityViolations-{variant}",
                model_metric(Metric.QUALITY_VIOLATIONS, variant),
                threshold=quality_alarm_violations,
                description=(
                    f"{model_name} ({variant}): {quality_alarm_violations} or more data-quality violations (missing "
                    f"or extra columns, types, completeness, unseen categories, range) in the last window. "
                    f"Reports: {reports}"
                ),
            )
            if quality_degradation_ratio is not None:
                self.alarm(
                    f"QualityDegradation-{variant}",
                    gated_degradation(model_metric, variant, quality_min_labels, period),
                    threshold=quality_degradation_ratio,
                    comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                    description=(
                        f"{model_name} ({variant}): on the late labels of the last window (at least "
                        f"{quality_min_labels} labelled rows) its worst metric is more than "
                        f"{quality_degradation_ratio}x its training value (MAE/RMSE: current / training; "
                        f"accuracy/F1/AUC: training / current). Reports: {reports}"
                    ),
                )
        if labels_failures is not None:
            self.alarm(
                "LabelsBatchFailures",
                labels_failures.metric_approximate_number_of_messages_visible(period=ONE_MINUTE, statistic="Maximum"),
                threshold=1,
                description=(
                    "The labels stream's event source gave up on a batch (S3 writes failing past the retries or the "
                    "record age): its labels are not in S3. The queue holds the batch's position: replay it from the "
                    "labels stream before its 24-hour retention ends."
                ),
            )
        self.alarm(
            "MonitorErrors",
            monitor_function.metric_errors(period=period, statistic="Sum"),
            threshold=1,
            description=f"The monitor function failed a window (see its log group): drift went unchecked. {reports}",
        )
        self._model_widgets(model_metric, monitor_function, model_name, variants, period)
        if quality_degradation_ratio is not None:
            self._quality_widgets(model_metric, model_name, variants, period, quality_degradation_ratio)
        if len(self.alarms) > before:
            self.dashboard.add_widgets(
                cloudwatch.AlarmStatusWidget(alarms=self.alarms[before:], width=24, title="Monitoring alarms")
            )

    def _model_widgets(
        self,
        model_metric: Callable[[str, str], cloudwatch.Metric],
        monitor_function: lambda_.IFunction,
        model_name: str,
        variants: tuple[str, ...],
        period: Duration,
    ) -> None:
        # Features are the reference's, unknown at synth: one search finds every feature's DriftScore.
        search = (
            f"SEARCH('{{{Metric.NAMESPACE},{Metric.FEATURE_DIMENSION},{Metric.MODEL_DIMENSION},"
            f'{Metric.VARIANT_DIMENSION}}} MetricName="{Metric.DRIFT_SCORE}" '
            f"{Metric.MODEL_DIMENSION}=\"{model_name}\"', 'Maximum', {int(period.to_seconds())})"
        )
        guides = [
            cloudwatch.HorizontalAnnotation(value=PSI_WARN, label="warn", color=cloudwatch.Color.ORANGE),
            cloudwatch.HorizontalAnnotation(value=PSI_ALERT, label="alert", color=cloudwatch.Color.RED),
        ]
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title=f"Drift score (PSI) per feature: {model_name}",
                left=[cloudwatch.MathExpression(expression=search, using_metrics={}, label="", period=period)],
                left_annotations=guides,
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Drifted features and quality violations per window",
                left=[model_metric(Metric.DRIFTED_FEATURES, v).with_(label=f"drifted ({v})") for v in variants],
                right=[model_metric(Metric.QUALITY_VIOLATIONS, v).with_(label=f"violations ({v})") for v in variants],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Rows per monitor window",
                left=[model_metric(Metric.MONITOR_ROWS, v).with_(label=f"rows ({v})") for v in variants],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Capture errors (scorer and API)", left=[self.kit_metric(CAPTURE_ERRORS_METRIC)], width=8
            ),
            cloudwatch.GraphWidget(
                title="Monitor function: errors and duration (ms)",
                left=[monitor_function.metric_errors(period=period, statistic="Sum")],
                right=[monitor_function.metric_duration(period=period, statistic="Maximum")],
                width=8,
            ),
        )

    def _quality_widgets(
        self,
        model_metric: Callable[[str, str], cloudwatch.Metric],
        model_name: str,
        variants: tuple[str, ...],
        period: Duration,
        ratio: float,
    ) -> None:
        # The metric dimension's values (mae, rmse / accuracy, f1, auc) follow the task: one search finds them all.
        search = (
            f"SEARCH('{{{Metric.NAMESPACE},{Metric.METRIC_DIMENSION},{Metric.MODEL_DIMENSION},"
            f'{Metric.VARIANT_DIMENSION}}} MetricName="{Metric.MODEL_QUALITY}" '
            f"{Metric.MODEL_DIMENSION}=\"{model_name}\"', 'Maximum', {int(period.to_seconds())})"
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title=f"Model quality on late labels per metric and variant: {model_name}",
                left=[cloudwatch.MathExpression(expression=search, using_metrics={}, label="", period=period)],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Degradation vs training (> 1 worse)",
                left=[model_metric(Metric.QUALITY_DEGRADATION, v).with_(label=f"ratio ({v})") for v in variants],
                left_annotations=[
                    cloudwatch.HorizontalAnnotation(value=ratio, label="alarm", color=cloudwatch.Color.RED)
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Labelled rows per window",
                left=[model_metric(Metric.LABELLED_ROWS, v).with_(label=f"labelled ({v})") for v in variants],
                width=8,
            ),
        )
