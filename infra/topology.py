"""The kit's resources as plain data: names, shard counts, trigger settings, payload mapping.

One definition read by the CDK stack (from CDK context) and by the local cloud (from the same keys),
so the emulator creates what `cdk deploy` would. No aws_cdk import here: the local runtime must not
pay CDK's start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# The image's two entry points (each function's CMD): the stack, the local runners and the tests read these.
STREAM_HANDLER = "lambda_fn.handler.stream_handler"
API_HANDLER = "lambda_fn.handler.api_handler"
MONITOR_HANDLER = "lambda_fn.handler.monitor_handler"  # the scheduled monitor window job (issue 14)
LABELS_HANDLER = "lambda_fn.handler.labels_handler"  # the labels stream's consumer (issue 14)
PRE_TRAFFIC_HANDLER = "lambda_fn.handler.pre_traffic_hook"  # CodeDeploy BeforeAllowTraffic (release checks)
POST_TRAFFIC_HANDLER = "lambda_fn.handler.post_traffic_hook"  # CodeDeploy AfterAllowTraffic


class TopologyError(ValueError):
    """A context value is missing or malformed; the message names the context key."""


class Ctx:
    """CDK context keys (`cdk deploy -c key=value` or cdk.json); the local cloud reads the same."""

    STAGE = "stage"
    PREFIX = "prefix"
    MODEL_URI = "model_uri"
    MODEL_SHA256 = "model_sha256"
    MODEL_NAME = "model_name"
    MODEL_VERSION = "model_version"
    FEATURES_FIELD = "features_field"
    ID_FIELD = "id_field"
    FEATURE_HOOK = "feature_hook"
    STREAM_MODE = "stream_mode"  # on-demand | provisioned
    INPUT_SHARDS = "input_shards"
    OUTPUT_SHARDS = "output_shards"
    RETENTION_HOURS = "retention_hours"
    BATCH_SIZE = "batch_size"
    BATCHING_WINDOW_SECONDS = "batching_window_seconds"
    PARALLELIZATION_FACTOR = "parallelization_factor"
    RETRY_ATTEMPTS = "retry_attempts"
    MAX_RECORD_AGE_SECONDS = "max_record_age_seconds"
    BISECT_ON_ERROR = "bisect_on_error"
    STARTING_POSITION = "starting_position"
    # CDK only (infra/settings.py): functions, API, release, monitoring, rollout models.
    MODEL_KEY = "model_key"  # key or prefix inside the stack's own model bucket (instead of model_uri)
    ARCHITECTURE = "architecture"  # arm64 | x86_64
    BASE_IMAGE = "base_image"  # Lambda base image override, e.g. pinned by digest: repo:tag@sha256:...
    MEMORY_MB = "memory_mb"
    TIMEOUT_SECONDS = "timeout_seconds"
    RESERVED_CONCURRENCY = "reserved_concurrency"
    API_MEMORY_MB = "api_memory_mb"
    API_TIMEOUT_SECONDS = "api_timeout_seconds"
    API_RESERVED_CONCURRENCY = "api_reserved_concurrency"
    API_PROVISIONED_CONCURRENCY = "api_provisioned_concurrency"
    API_MAX_BODY_BYTES = "api_max_body_bytes"
    LOG_RETENTION_DAYS = "log_retention_days"
    LOG_LEVEL = "log_level"
    API_AUTH = "api_auth"  # api-key | iam
    API_RATE_LIMIT = "api_rate_limit"
    API_BURST_LIMIT = "api_burst_limit"
    API_QUOTA_PER_DAY = "api_quota_per_day"
    ROLLOUT = "rollout"  # canary | linear | all-at-once | blue-green
    ALARMS = "alarms"  # true | false: CloudWatch alarms (and the rollback they drive)
    ALARM_EMAIL = "alarm_email"
    ITERATOR_AGE_ALARM_SECONDS = "iterator_age_alarm_seconds"
    API_P99_ALARM_MS = "api_p99_alarm_ms"
    SHADOW_MODEL_URI = "shadow_model_uri"
    SHADOW_MODEL_SHA256 = "shadow_model_sha256"
    SHADOW_TIMEOUT_MS = "shadow_timeout_ms"
    MODEL_VARIANTS = "model_variants"  # JSON list of {name, uri, sha256, weight}
    BATCH_SCORING = "batch_scoring"  # true | false: EMR Serverless batch scoring (infra/batch_emr.py)
    # Prediction monitoring (infra/model_monitor.py; docs/monitoring.md): off unless monitoring=true.
    MONITORING = "monitoring"  # true | false
    MONITORING_SAMPLE_RATE = "monitoring_sample_rate"  # share of records captured, 0..1
    MONITORING_PAYLOAD = "monitoring_payload"  # features | raw
    MONITORING_HASH_IDS = "monitoring_hash_ids"  # true: ids hashed with a key from a generated secret
    MONITORING_CAPTURE_TIMEOUT_MS = "monitoring_capture_timeout_ms"  # the capture's bound (runtime default if unset)
    MONITORING_SCHEDULE_MINUTES = "monitoring_schedule_minutes"
    MONITORING_SHORT_WINDOW_MINUTES = "monitoring_short_window_minutes"
    MONITORING_LONG_WINDOW_HOURS = "monitoring_long_window_hours"
    MONITORING_CAPTURE_DAYS = "monitoring_capture_days"  # expiry of capture/ and profiles/
    MONITORING_REPORT_DAYS = "monitoring_report_days"  # expiry of reports/
    MONITORING_DRIFT_ALARM_FEATURES = "monitoring_drift_alarm_features"  # alarm at this many DriftedFeatures
    MONITORING_QUALITY_ALARM_VIOLATIONS = "monitoring_quality_alarm_violations"  # alarm at this many violations
    # Model quality from late labels (the monitor's MONITOR_LABEL* settings; docs/monitoring.md).
    MONITORING_LABELS = "monitoring_labels"  # true: the monitor joins labels under <prefix>/labels/ every window
    MONITORING_LABEL_DELAY_MINUTES = "monitoring_label_delay_minutes"
    MONITORING_LABEL_SPAN_MINUTES = "monitoring_label_span_minutes"
    MONITORING_LABEL_TASK = "monitoring_label_task"  # regression | classification
    MONITORING_LABEL_DAYS = "monitoring_label_days"  # expiry of labels/
    MONITORING_LABELS_STREAM = "monitoring_labels_stream"  # true: a Kinesis labels stream and its function
    MONITORING_QUALITY_DEGRADATION_RATIO = "monitoring_quality_degradation_ratio"  # alarm above this ratio
    MONITORING_QUALITY_MIN_LABELS = "monitoring_quality_min_labels"  # the degradation alarm needs this many labels
    MODEL_TRAINING_METRICS = "model_training_metrics"  # the release manifest's metrics (JSON object)
    MODEL_REFERENCE_URI = "model_reference_uri"  # the release manifest's reference.uri
    MODEL_REFERENCE_SHA256 = "model_reference_sha256"  # the release manifest's reference.sha256


class CaptureEnv:
    """Environment of the scorer and API functions for capture and profiles (issue 14).

    The names the capture runtime reads (`lambda_fn.config.Env` once that lands); kept here, with no runtime
    import, so the stack sets them from one place. `CAPTURE_PREFIX` is the monitor's `MONITOR_PREFIX`: capture
    objects go under `<prefix>/capture/`, profiles under `<prefix>/profiles/`, the monitor's reports under
    `<prefix>/reports/` (lambda_fn.monitoring.s3_store's layout).
    """

    CAPTURE_BUCKET = "CAPTURE_BUCKET"
    CAPTURE_PREFIX = "CAPTURE_PREFIX"
    CAPTURE_SAMPLE_RATE = "CAPTURE_SAMPLE_RATE"
    CAPTURE_PAYLOAD = "CAPTURE_PAYLOAD"
    CAPTURE_ID_KEY_SECRET_ARN = "CAPTURE_ID_KEY_SECRET_ARN"
    CAPTURE_TIMEOUT_MS = "CAPTURE_TIMEOUT_MS"
    MONITOR_REFERENCE_URI = "MONITOR_REFERENCE_URI"
    MONITOR_REFERENCE_SHA256 = "MONITOR_REFERENCE_SHA256"


# The monitoring bucket's layout under MONITORING_PREFIX (the same words as lambda_fn.monitoring.s3_store's).
MONITORING_PREFIX = "monitoring"
CAPTURE_DIR, PROFILES_DIR, REPORTS_DIR = "capture", "profiles", "reports"  # s3_store.CAPTURE, PROFILES, REPORTS
LABELS_DIR = "labels"  # s3_labels.LABELS
HOURLY_DIR = "profiles-hourly"  # s3_store.HOURLY: the monitor's merged profile per variant and complete hour
# The profiles' variant when no A/B arms are configured (lambda_fn.variants.PRIMARY), and the scorer's metric of
# capture faults (EMF, dimension service, like the kit's other counters).
PRIMARY_VARIANT = "primary"
CAPTURE_ERRORS_METRIC = "CaptureErrors"
# PSI's warn and alert levels (lambda_fn.monitoring.drift.DEFAULT_THRESHOLDS.psi): the dashboard's guide lines.
PSI_WARN, PSI_ALERT = 0.1, 0.25


StreamMode = Literal["on-demand", "provisioned"]


@dataclass(frozen=True)
class StreamSpec:
    name: str
    mode: StreamMode
    shards: int
    retention_hours: int


@dataclass(frozen=True)
class TriggerSpec:
    """Lambda's Kinesis event source mapping; the local poller honours the same values."""

    batch_size: int = 500
    batching_window_seconds: int = 1
    parallelization_factor: int = 1
    retry_attempts: int = 3
    max_record_age_seconds: int = 3600
    bisect_on_error: bool = True
    starting_position: Literal["TRIM_HORIZON", "LATEST"] = "TRIM_HORIZON"


# The labels stream (infra/label_stream.py) and its event source, which the local poller honours too: larger batches
# make fewer objects for the quality job to read; an S3 outage is retried for a while, then the batch's metadata goes
# to the on-failure queue; no bisection (a malformed record is dropped, never fails alone).
LABELS_RETENTION_HOURS = 24
LABELS_TRIGGER = TriggerSpec(
    batch_size=1000, batching_window_seconds=10, retry_attempts=10, max_record_age_seconds=6 * 3600,
    bisect_on_error=False,
)  # fmt: skip


@dataclass(frozen=True)
class Topology:
    stage: str
    prefix: str
    input_stream: StreamSpec
    output_stream: StreamSpec
    trigger: TriggerSpec = field(default_factory=TriggerSpec)
    features_field: str | None = "ride"
    id_field: str | None = "ride_id"
    feature_hook: str | None = "lambda_fn.hooks:taxi_features"
    labels: bool = False  # monitoring_labels_stream=true: the labels stream, its function and on-failure queue

    @property
    def labels_stream(self) -> StreamSpec:
        """Late ground truth (issue 14): one label per record, filed in S3 by the labels function."""
        return StreamSpec(f"{self.prefix}-labels", "on-demand", 1, LABELS_RETENTION_HOURS)

    @property
    def labels_failures_queue_name(self) -> str:
        """The labels stream's on-failure destination (batch metadata to replay from)."""
        return f"{self.prefix}-labels-failures"

    @property
    def model_bucket(self) -> str:
        """Local name only: in AWS the bucket name is generated (globally unique) and exported."""
        return f"{self.prefix}-models"

    @property
    def dlq_name(self) -> str:
        return f"{self.prefix}-dead-letters"

    @property
    def on_failure_queue_name(self) -> str:
        return f"{self.prefix}-batch-failures"

    @property
    def shadow_stream(self) -> StreamSpec:
        """Where a shadow model's predictions go (SHADOW_OUTPUT_STREAM_NAME), apart from the real output."""
        out = self.output_stream
        return StreamSpec(f"{self.prefix}-shadow-predictions", out.mode, out.shards, out.retention_hours)

    def lambda_environment(self) -> dict[str, str]:
        """Payload-mapping variables of the scorer, by their names in lambda_fn.config."""
        from lambda_fn.config import Env

        env = {}
        if self.features_field:
            env[Env.FEATURES_FIELD] = self.features_field
        if self.id_field:
            env[Env.ID_FIELD] = self.id_field
        if self.feature_hook:
            env[Env.FEATURE_HOOK] = self.feature_hook
        return env


def context_int(ctx: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    """`ctx[key]` as an integer in [low, high] (`default` when absent); TopologyError says what is wrong."""
    value = ctx.get(key, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise TopologyError(f"context {key}={value!r}: must be an integer") from None
    if not low <= number <= high:
        raise TopologyError(f"context {key}={number}: must be between {low} and {high}")
    return number


def context_bool(ctx: Mapping[str, Any], key: str, default: bool) -> bool:
    """`ctx[key]` as a boolean (true/false, 1/0, yes/no; `default` when absent)."""
    value = ctx.get(key, default)
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise TopologyError(f"context {key}={value!r}: must be true or false")


def context_opt(ctx: Mapping[str, Any], key: str, default: str | None) -> str | None:
    """`ctx[key]` as text, None when absent or empty ("", "none", "null")."""
    value = ctx.get(key, default)
    if value is None or str(value).strip() in ("", "none", "null"):
        return None
    return str(value)


def topology(ctx: Mapping[str, Any] | None = None) -> Topology:
    """Build the topology from CDK context (or any mapping of the same keys) with safe defaults."""
    ctx = ctx or {}
    stage = str(ctx.get(Ctx.STAGE, "dev"))
    prefix = str(ctx.get(Ctx.PREFIX, f"serving-{stage}"))
    mode = str(ctx.get(Ctx.STREAM_MODE, "on-demand"))
    if mode not in ("on-demand", "provisioned"):
        raise TopologyError(f"context {Ctx.STREAM_MODE}={mode!r}: must be on-demand or provisioned")
    retention = context_int(ctx, Ctx.RETENTION_HOURS, 24, 24, 8760)
    in_shards = context_int(ctx, Ctx.INPUT_SHARDS, 2, 1, 500)
    out_shards = context_int(ctx, Ctx.OUTPUT_SHARDS, 2, 1, 500)
    start = str(ctx.get(Ctx.STARTING_POSITION, "TRIM_HORIZON"))
    if start not in ("TRIM_HORIZON", "LATEST"):
        raise TopologyError(f"context {Ctx.STARTING_POSITION}={start!r}: must be TRIM_HORIZON or LATEST")
    trigger = TriggerSpec(
        batch_size=context_int(ctx, Ctx.BATCH_SIZE, 500, 1, 10_000),
        batching_window_seconds=context_int(ctx, Ctx.BATCHING_WINDOW_SECONDS, 1, 0, 300),
        parallelization_factor=context_int(ctx, Ctx.PARALLELIZATION_FACTOR, 1, 1, 10),
        retry_attempts=context_int(ctx, Ctx.RETRY_ATTEMPTS, 3, -1, 10_000),
        max_record_age_seconds=context_int(ctx, Ctx.MAX_RECORD_AGE_SECONDS, 3600, -1, 604_800),
        bisect_on_error=context_bool(ctx, Ctx.BISECT_ON_ERROR, True),
        starting_position=start,  # type: ignore[arg-type]
    )
    age = trigger.max_record_age_seconds
    if 0 <= age < 60:  # Lambda's rule: the local poller must not accept what a deploy would refuse
        raise TopologyError(f"context {Ctx.MAX_RECORD_AGE_SECONDS}={age}: must be -1 (no limit) or at least 60")
    return Topology(
        stage=stage,
        prefix=prefix,
        input_stream=StreamSpec(f"{prefix}-input", mode, in_shards, retention),  # type: ignore[arg-type]
        output_stream=StreamSpec(f"{prefix}-predictions", mode, out_shards, retention),  # type: ignore[arg-type]
        trigger=trigger,
        features_field=context_opt(ctx, Ctx.FEATURES_FIELD, "ride"),
        id_field=context_opt(ctx, Ctx.ID_FIELD, "ride_id"),
        feature_hook=context_opt(ctx, Ctx.FEATURE_HOOK, "lambda_fn.hooks:taxi_features"),
        labels=labels_stream_on(ctx),
    )


def labels_stream_on(ctx: Mapping[str, Any]) -> bool:
    """`monitoring_labels_stream`, which needs `monitoring_labels` (the monitor reads what the stream files)."""
    stream = context_bool(ctx, Ctx.MONITORING_LABELS_STREAM, False)
    if stream and not context_bool(ctx, Ctx.MONITORING_LABELS, False):
        raise TopologyError(
            f"context {Ctx.MONITORING_LABELS_STREAM}=true needs {Ctx.MONITORING_LABELS}=true: nothing would read "
            "the labels it files"
        )
    return stream
