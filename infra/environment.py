"""The functions' environment, built from `lambda_fn.config.Env` names and checked by the Lambda's own parser.

No aws_cdk import: values may be CDK tokens (bucket name, queue URL) but the shapes are checked at
synth with `settings_from`, the same code the function runs at init, so a bad model URI or digest
fails `cdk synth` instead of the first cold start.
"""

from __future__ import annotations

import json

from infra.settings import DeploySettings
from lambda_fn.config import ConfigError, Env, Metric, settings_from


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


def _checked(env: dict[str, str]) -> dict[str, str]:
    try:
        settings_from(env)
    except ConfigError as exc:
        raise ConfigError(f"the function environment would not start: {exc}") from None
    return env


def scorer_environment(
    s: DeploySettings, *, model_bucket: str, output_stream: str, dlq_url: str, shadow_stream: str | None = None
) -> dict[str, str]:
    """Stream scorer: the model, both sinks, the payload mapping, and the shadow's own stream if any."""
    env = {**_common(s, model_bucket), Env.OUTPUT_STREAM_NAME: output_stream, Env.DLQ_URL: dlq_url}
    if shadow_stream:
        env[Env.SHADOW_OUTPUT_STREAM_NAME] = shadow_stream
    return _checked(env)


def api_environment(s: DeploySettings, *, model_bucket: str) -> dict[str, str]:
    """API function: the same model and mapping, no sinks, and the request size cap.

    No shadow stream either: the API function has no stream rights; its shadow results go to metrics and logs.
    """
    env = {
        **_common(s, model_bucket),
        Env.API_MAX_BODY_BYTES: str(s.api_max_body_bytes),
        # Single-row requests: OpenMP's thread start-up costs more than it saves (measured in bench_api).
        Env.OMP_NUM_THREADS: "1",
    }
    return _checked(env)
