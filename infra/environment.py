"""The functions' environment, built from `lambda_fn.config.Env` names and checked by the Lambda's own parser.

No aws_cdk import: values may be CDK tokens (bucket name, queue URL) but the shapes are checked at
synth with `settings_from`, the same code the function runs at init, so a bad model URI or digest
fails `cdk synth` instead of the first cold start.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from infra.settings import DeploySettings, MonitoringSettings
from infra.topology import CaptureEnv
from lambda_fn.config import (
    ConfigError,
    Env,
    LabelsEnv,
    Metric,
    MonitorEnv,
    labels_settings_from,
    monitor_settings_from,
    settings_from,
)

# The runtime's names and parsers this module builds and checks the environments with, exported with its builders:
# a test of the environments imports all of them from here, the one place infra takes them from.
__all__ = [
    "CaptureTarget",
    "ConfigError",
    "Env",
    "LabelsEnv",
    "Metric",
    "MonitorEnv",
    "api_environment",
    "labels_environment",
    "labels_settings_from",
    "monitor_environment",
    "monitor_settings_from",
    "scorer_environment",
    "settings_from",
]

# A CDK token (a bucket name or ARN known at deploy time) as it appears in a string at synth.
_TOKEN = re.compile(r"\$\{Token\[[^\]]+\]\}")
# Shape-valid stand-ins for tokens while the runtime's parser checks an environment at synth.
_PLACEHOLDERS = {
    CaptureEnv.CAPTURE_BUCKET: "bucket-named-at-deploy",
    MonitorEnv.MONITOR_BUCKET: "bucket-named-at-deploy",
    CaptureEnv.CAPTURE_ID_KEY_SECRET_ARN: "arn:aws:secretsmanager:us-east-1:000000000000:secret:named-at-deploy",
    MonitorEnv.MONITOR_ID_KEY_SECRET_ARN: "arn:aws:secretsmanager:us-east-1:000000000000:secret:named-at-deploy",
    LabelsEnv.LABELS_BUCKET: "bucket-named-at-deploy",
}


@dataclass(frozen=True)
class CaptureTarget:
    """Where the serving functions capture to (the monitoring bucket) and the id-hashing key's secret, if any."""

    bucket: str
    id_key_secret_arn: str | None = None


def _common(s: DeploySettings, model_bucket: str) -> dict[str, str]:
    env = {
        Env.MODEL_URI: s.model.env_uri(model_bucket),
        Env.MODEL_SHA256: s.model.sha256,
        Env.POWERTOOLS_SERVICE_NAME: s.topology.prefix,  # the metrics' `service` dimension: one per stage
        Env.POWERTOOLS_METRICS_NAMESPACE: Metric.NAMESPACE,
        Env.LOG_LEVEL: s.log_level,
        **s.topology.lambda_environment(),
    }
    if s.model_name:
        env[Env.MODEL_NAME] = s.model_name
    if s.model_version:
        env[Env.MODEL_VERSION] = s.model_version
    if s.shadow:
        env[Env.SHADOW_MODEL_URI] = s.shadow.env_uri(model_bucket)
        env[Env.SHADOW_MODEL_SHA256] = s.shadow.sha256
        env[Env.SHADOW_TIMEOUT_MS] = str(s.shadow_timeout_ms)
    if s.variants:
        env[Env.MODEL_VARIANTS] = json.dumps(
            [
                {"name": v.name, "uri": v.model.env_uri(model_bucket), "sha256": v.model.sha256, "weight": v.weight}
                for v in s.variants
            ],
            separators=(",", ":"),
        )
    return env


def _capture(m: MonitoringSettings, target: CaptureTarget) -> dict[str, str]:
    """Capture and profiles on the hot path: the bucket and prefix, the sampling, the reference the profiles bin by."""
    env = {
        CaptureEnv.CAPTURE_BUCKET: target.bucket,
        CaptureEnv.CAPTURE_PREFIX: m.prefix,
        CaptureEnv.CAPTURE_SAMPLE_RATE: repr(m.sample_rate),
        CaptureEnv.CAPTURE_PAYLOAD: m.payload,
        CaptureEnv.MONITOR_REFERENCE_URI: m.reference.env_uri(""),
        CaptureEnv.MONITOR_REFERENCE_SHA256: m.reference.sha256,
    }
    if target.id_key_secret_arn:
        env[CaptureEnv.CAPTURE_ID_KEY_SECRET_ARN] = target.id_key_secret_arn
    if m.capture_timeout_ms is not None:
        env[CaptureEnv.CAPTURE_TIMEOUT_MS] = str(m.capture_timeout_ms)
    return env


def _with_capture(s: DeploySettings, env: dict[str, str], capture: CaptureTarget | None) -> dict[str, str]:
    if s.monitoring is None or capture is None:
        return env
    return {**env, **_capture(s.monitoring, capture)}


def _for_check(env: dict[str, str]) -> dict[str, str]:
    """The environment with deploy-time tokens replaced by shape-valid stand-ins (names, ARNs)."""
    return {k: _PLACEHOLDERS.get(k, v) if _TOKEN.search(v) else v for k, v in env.items()}


def _checked(env: dict[str, str]) -> dict[str, str]:
    try:
        settings_from(_for_check(env))
    except ConfigError as exc:
        raise ConfigError(f"the function environment would not start: {exc}") from None
    return env


def scorer_environment(
    s: DeploySettings,
    *,
    model_bucket: str,
    output_stream: str,
    dlq_url: str,
    shadow_stream: str | None = None,
    capture: CaptureTarget | None = None,
) -> dict[str, str]:
    """Stream scorer: the model, both sinks, the payload mapping, the shadow's own stream and capture if any."""
    env = {**_common(s, model_bucket), Env.OUTPUT_STREAM_NAME: output_stream, Env.DLQ_URL: dlq_url}
    if shadow_stream:
        env[Env.SHADOW_OUTPUT_STREAM_NAME] = shadow_stream
    return _checked(_with_capture(s, env, capture))


def api_environment(s: DeploySettings, *, model_bucket: str, capture: CaptureTarget | None = None) -> dict[str, str]:
    """API function: the same model, mapping and capture, no sinks, and the request size cap.

    No shadow stream either: the API function has no stream rights; its shadow results go to metrics and logs.
    """
    env = {
        **_common(s, model_bucket),
        Env.API_MAX_BODY_BYTES: str(s.api_max_body_bytes),
        # Single-row requests: OpenMP's thread start-up costs more than it saves (measured in bench_api).
        Env.OMP_NUM_THREADS: "1",
    }
    return _checked(_with_capture(s, env, capture))


def _labels(m: MonitoringSettings, id_key_secret_arn: str | None) -> dict[str, str]:
    """Model quality from late labels: the join's delay and span, the task, the release's training metrics and,
    when capture hashes ids, the key the monitor hashes label ids with."""
    env = {
        MonitorEnv.MONITOR_LABELS: "true",
        MonitorEnv.MONITOR_LABEL_DELAY_MINUTES: str(m.label_delay_minutes),
        MonitorEnv.MONITOR_LABEL_SPAN_MINUTES: str(m.label_span_minutes),
        MonitorEnv.MONITOR_LABEL_TASK: m.label_task,
    }
    if m.training_metrics:
        env[MonitorEnv.MONITOR_TRAINING_METRICS] = m.training_metrics
    if id_key_secret_arn:
        env[MonitorEnv.MONITOR_ID_KEY_SECRET_ARN] = id_key_secret_arn
    return env


def monitor_environment(s: DeploySettings, *, bucket: str, id_key_secret_arn: str | None = None) -> dict[str, str]:
    """The monitor function: where the profiles and reports are, whose they are, the reference, the windows and,
    with labels, the quality job's settings (`id_key_secret_arn`: capture's id key, when ids are hashed).

    Checked at synth with the monitor's own parser (`lambda_fn.config.monitor_settings_from`)."""
    m = s.monitoring
    if m is None:
        raise ConfigError("monitor_environment: monitoring is off")
    env = {
        MonitorEnv.MONITOR_BUCKET: bucket,
        MonitorEnv.MONITOR_PREFIX: m.prefix,
        MonitorEnv.MONITOR_MODEL_NAME: m.model_name,
        MonitorEnv.MONITOR_MODEL_SHA256: s.model.sha256,
        MonitorEnv.MONITOR_REFERENCE_URI: m.reference.env_uri(""),
        MonitorEnv.MONITOR_REFERENCE_SHA256: m.reference.sha256,
        MonitorEnv.MONITOR_SHORT_WINDOW_MINUTES: str(m.short_window_minutes),
        MonitorEnv.MONITOR_LONG_WINDOW_HOURS: str(m.long_window_hours),
        Env.POWERTOOLS_SERVICE_NAME: s.topology.prefix,
        Env.POWERTOOLS_METRICS_NAMESPACE: Metric.NAMESPACE,
        Env.LOG_LEVEL: s.log_level,
    }
    if s.model_version:
        env[MonitorEnv.MONITOR_MODEL_VERSION] = s.model_version
    if m.labels:
        env.update(_labels(m, id_key_secret_arn))
    try:
        monitor_settings_from(_for_check(env))
    except ConfigError as exc:
        raise ConfigError(f"the monitor's environment would not start: {exc}") from None
    return env


def labels_environment(s: DeploySettings, *, bucket: str) -> dict[str, str]:
    """The labels function: the monitoring bucket and prefix (labels go under <prefix>/labels/), checked at synth
    with its own parser (`lambda_fn.config.labels_settings_from`)."""
    m = s.monitoring
    if m is None:
        raise ConfigError("labels_environment: monitoring is off")
    env = {
        LabelsEnv.LABELS_BUCKET: bucket,
        LabelsEnv.LABELS_PREFIX: m.prefix,
        Env.POWERTOOLS_SERVICE_NAME: s.topology.prefix,
        Env.POWERTOOLS_METRICS_NAMESPACE: Metric.NAMESPACE,
        Env.LOG_LEVEL: s.log_level,
    }
    try:
        labels_settings_from(_for_check(env))
    except ConfigError as exc:
        raise ConfigError(f"the labels function's environment would not start: {exc}") from None
    return env
