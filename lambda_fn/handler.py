"""Lambda entry points. They adapt events and nothing else; the work lives in the modules they call.

`lambda_fn.handler.stream_handler` scores Kinesis batches; `lambda_fn.handler.api_handler` serves the
synchronous API; `lambda_fn.handler.monitor_handler` runs one monitor window (EventBridge Scheduler);
`lambda_fn.handler.labels_handler` files a Kinesis batch of late labels in S3 for the quality job.
`pre_traffic_hook` / `post_traffic_hook` are CodeDeploy's release checks (`lambda_fn.release_checks`), and both
serving handlers answer the pre-traffic hook's smoke-test event without writing anything.
Inside the Lambda runtime the configuration is validated at init, so a missing or malformed setting fails the
cold start with a message naming it.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambda_fn import runtime
from lambda_fn.config import (
    Metric,
    get_labels_settings,
    get_monitor_settings,
    get_settings,
    metrics_namespace,
    service_name,
)
from lambda_fn.release_checks import answer_smoke_test, is_smoke_test
from lambda_fn.stream import process_batch

logger = Logger(service=service_name())
metrics = Metrics(namespace=metrics_namespace())


# With metrics disabled (local runs), Powertools still prints the cold-start metric and keeps
# accumulating the metric set (auto-flushing it every 100 metrics): honour the switch here.
def _metrics_enabled() -> bool:
    return os.environ.get("POWERTOOLS_METRICS_DISABLED", "false").lower() not in ("1", "true")


_METRICS_ENABLED = _metrics_enabled()
if not _METRICS_ENABLED:
    warnings.filterwarnings("ignore", message="No application metrics to publish")

if os.environ.get("AWS_LAMBDA_RUNTIME_API"):
    # Lambda names the configured handler in _HANDLER: the monitor reads its own settings (no model to serve),
    # the release hooks read theirs when invoked, the stream scorer cannot start without its outputs.
    _handler = os.environ.get("_HANDLER", "")
    if _handler == f"{__name__}.monitor_handler":
        get_monitor_settings()
    elif _handler == f"{__name__}.labels_handler":
        get_labels_settings()
    elif not _handler.endswith("_traffic_hook"):
        _settings = get_settings()
        if _handler == f"{__name__}.stream_handler":
            _settings.require_stream_outputs()
        if _settings.capture_bucket:  # the id key and the reference (sha256-checked) are read at init
            runtime.capture()


def _emit_load_metrics() -> None:
    for seconds in runtime.drain_load_times():
        metrics.add_metric(name=Metric.MODEL_LOAD_TIME, unit=MetricUnit.Milliseconds, value=seconds * 1000)
    if not _metrics_enabled():
        metrics.clear_metrics()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=_METRICS_ENABLED)
def stream_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Kinesis event source mapping with ReportBatchItemFailures (and the release hook's smoke test: no writes)."""
    if is_smoke_test(event):
        return answer_smoke_test(event, runtime.get_model())
    try:
        return process_batch(event, runtime.stream_runtime(), metrics)
    finally:
        _emit_load_metrics()


# REST v1, HTTP API v2 and function URL events all carry API Gateway's request id at this path.
@logger.inject_lambda_context(clear_state=True, correlation_id_path="requestContext.requestId")
@metrics.log_metrics(capture_cold_start_metric=_METRICS_ENABLED)
def api_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway (REST v1, HTTP v2) and function URL events."""
    if is_smoke_test(event):  # the release hook's smoke test, never an API Gateway event
        return answer_smoke_test(event, runtime.get_model())
    from lambda_fn.api.app import handle

    try:
        response: dict[str, Any] = handle(event, context, metrics)
        return response
    finally:
        _emit_load_metrics()


@logger.inject_lambda_context(clear_state=True)
def monitor_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """EventBridge Scheduler (or a manual invoke): one monitor window ending at the event's `at` / `time`."""
    from lambda_fn.monitoring.job import run_scheduled

    answer = run_scheduled(event, get_monitor_settings())
    logger.info("monitor window", extra=answer)
    return answer


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=_METRICS_ENABLED)
def labels_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Kinesis labels stream with ReportBatchItemFailures: one S3 object of labels per batch."""
    from lambda_fn.monitoring.label_stream import labels_s3, report_outcome, write_labels

    settings = get_labels_settings()
    outcome = write_labels(labels_s3(), settings.labels_bucket, settings.labels_prefix, event)
    return report_outcome(outcome, metrics, logger)


@logger.inject_lambda_context(clear_state=True)
def pre_traffic_hook(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    """CodeDeploy BeforeAllowTraffic: smoke-test the new version, report Succeeded or Failed."""
    from lambda_fn.release_checks import run_from_environment

    answer = run_from_environment(event, "pre")
    logger.info("pre-traffic check", extra=answer)
    return answer


@logger.inject_lambda_context(clear_state=True)
def post_traffic_hook(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    """CodeDeploy AfterAllowTraffic: the release's alarms and the alias's errors, report Succeeded or Failed."""
    from lambda_fn.release_checks import run_from_environment

    answer = run_from_environment(event, "post")
    logger.info("post-traffic check", extra=answer)
    return answer
