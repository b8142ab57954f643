"""The Lambda's configuration: every environment name, read once into a typed, validated object.

This module is the single source of truth for names that cross a boundary. The CDK app
(`infra/`) and the local runtime import `Env` and `Metric` instead of repeating strings.
It imports nothing heavy, so infra code may import it cheaply.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the environment variable."""


class Env:
    """Environment variable names read by the Lambda image."""

    MODEL_URI = "MODEL_URI"
    MODEL_SHA256 = "MODEL_SHA256"
    MODEL_NAME = "MODEL_NAME"
    MODEL_VERSION = "MODEL_VERSION"
    MODEL_CACHE_DIR = "MODEL_CACHE_DIR"
    MODEL_TRUSTED_TYPES = "MODEL_TRUSTED_TYPES"
    ALLOW_UNPINNED_PICKLE = "ALLOW_UNPINNED_PICKLE"
    MODEL_ALLOW_ENV_MISMATCH = "MODEL_ALLOW_ENV_MISMATCH"
    OUTPUT_STREAM_NAME = "OUTPUT_STREAM_NAME"
    DLQ_URL = "DLQ_URL"
    FEATURES_FIELD = "FEATURES_FIELD"
    ID_FIELD = "ID_FIELD"
    FEATURE_HOOK = "FEATURE_HOOK"
    ALLOW_EXTERNAL_FEATURE_HOOK = "ALLOW_EXTERNAL_FEATURE_HOOK"
    INPUT_SCHEMA = "INPUT_SCHEMA"
    OUTPUT_MAX_ATTEMPTS = "OUTPUT_MAX_ATTEMPTS"
    OUTPUT_BASE_DELAY_MS = "OUTPUT_BASE_DELAY_MS"
    # The sync API and the rollout (shadow, A/B variants).
    API_MAX_BODY_BYTES = "API_MAX_BODY_BYTES"
    SHADOW_MODEL_URI = "SHADOW_MODEL_URI"
    SHADOW_MODEL_SHA256 = "SHADOW_MODEL_SHA256"
    SHADOW_TIMEOUT_MS = "SHADOW_TIMEOUT_MS"
    MODEL_VARIANTS = "MODEL_VARIANTS"
    SHADOW_OUTPUT_STREAM_NAME = "SHADOW_OUTPUT_STREAM_NAME"
    # Capture and profiles on the hot path (lambda_fn.monitoring.emit): on when CAPTURE_BUCKET is set.
    CAPTURE_BUCKET = "CAPTURE_BUCKET"
    CAPTURE_PREFIX = "CAPTURE_PREFIX"  # the monitor's MONITOR_PREFIX
    CAPTURE_SAMPLE_RATE = "CAPTURE_SAMPLE_RATE"
    CAPTURE_PAYLOAD = "CAPTURE_PAYLOAD"
    CAPTURE_ID_KEY_SECRET_ARN = "CAPTURE_ID_KEY_SECRET_ARN"
    CAPTURE_TIMEOUT_MS = "CAPTURE_TIMEOUT_MS"
    # The release's reference (the profiles' bins); the monitor function reads the same two names.
    MONITOR_REFERENCE_URI = "MONITOR_REFERENCE_URI"
    MONITOR_REFERENCE_SHA256 = "MONITOR_REFERENCE_SHA256"
    # Standard names owned by Powertools; listed so infra sets them from here too.
    POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
    POWERTOOLS_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
    LOG_LEVEL = "POWERTOOLS_LOG_LEVEL"
    # OpenMP threads of the model (HistGradientBoosting etc.): one thread is fastest for single rows.
    OMP_NUM_THREADS = "OMP_NUM_THREADS"
    # One-row predicts without pandas for ColumnTransformer(TargetEncoder) pipelines (lambda_fn.fast_path).
    SINGLE_ROW_FAST_PATH = "SINGLE_ROW_FAST_PATH"


class Metric:
    """CloudWatch metric names emitted (EMF) by the handlers; dashboards and alarms use these."""

    NAMESPACE = "ServingKit"
    SERVICE = "model-serving"
    RECORDS_IN = "RecordsIn"
    RECORDS_SCORED = "RecordsScored"
    RECORDS_DEAD_LETTERED = "RecordsDeadLettered"
    RECORDS_FAILED = "RecordsReportedFailed"
    DEAD_LETTERS_REJECTED = "DeadLettersRejected"  # SQS refused a dead letter: a minimal one was sent instead
    OUTPUT_RETRIES = "OutputPutRetries"
    BATCH_LATENCY = "BatchLatencyMs"
    PREDICT_LATENCY = "PredictLatencyMs"
    MODEL_LOAD_TIME = "ModelLoadTimeMs"
    # Rollout: A/B metrics reuse RECORDS_SCORED / PREDICT_LATENCY with this dimension; shadow metrics below.
    VARIANT_DIMENSION = "variant"
    SHADOW_RECORDS = "ShadowRecordsScored"
    SHADOW_ROW_ERRORS = "ShadowRowErrors"
    SHADOW_FAILURES = "ShadowFailures"
    SHADOW_TIMEOUTS = "ShadowTimeouts"
    SHADOW_SKIPPED = "ShadowRecordsSkipped"
    SHADOW_AGREEMENT = "ShadowAgreementPercent"
    SHADOW_MEAN_ABS_DIFF = "ShadowMeanAbsDiff"
    SHADOW_LATENCY = "ShadowPredictLatencyMs"
    SHADOW_UNPUBLISHED = "ShadowRecordsUnpublished"
    # Sync API (one datapoint per request): traffic, latency and answers by class.
    API_REQUESTS = "ApiRequests"
    API_LATENCY = "ApiLatencyMs"
    API_CLIENT_ERRORS = "ApiClientErrors"
    API_SERVER_ERRORS = "ApiServerErrors"
    # The monitor function (lambda_fn.monitoring.window), per window of MONITOR_SHORT_WINDOW_MINUTES: PSI of each
    # feature and the prediction (model, variant, feature), and per variant (model, variant) the features at alert,
    # the quality violations and the rows seen. (features + 1) + 3 metrics per variant.
    DRIFT_SCORE = "DriftScore"
    DRIFTED_FEATURES = "DriftedFeatures"
    QUALITY_VIOLATIONS = "QualityViolations"
    MONITOR_ROWS = "MonitorRows"
    # Model quality from late labels (lambda_fn.monitoring.quality_job), per window with MONITOR_LABELS=true: per
    # (model, variant, metric) MAE / RMSE or accuracy / F1 / AUC, per (model, variant) the labelled rows and the
    # worst ratio to the release's training metrics (> 1 worse). 4 (regression) or 5 metrics per variant.
    MODEL_QUALITY = "ModelQuality"
    LABELLED_ROWS = "LabelledRows"
    QUALITY_DEGRADATION = "QualityDegradation"
    METRIC_DIMENSION = "metric"
    # Capture on the hot path (lambda_fn.monitoring.emit), per batch or request: records written to S3, records
    # not captured (the previous capture still running, a record too large, or the bound reached), and faults
    # (an S3 error, a throttle, a capture step that raised). Profiles written are counted in ProfilesWritten.
    CAPTURED_RECORDS = "CapturedRecords"
    CAPTURE_DROPPED = "CaptureDropped"
    CAPTURE_ERRORS = "CaptureErrors"
    PROFILES_WRITTEN = "ProfilesWritten"
    # The labels stream (lambda_fn.monitoring.label_stream), per batch: labels received, written to S3, dropped
    # (malformed: never retried, the reason logged).
    LABELS_RECEIVED = "LabelsReceived"
    LABELS_WRITTEN = "LabelsWritten"
    LABELS_DROPPED = "LabelsDropped"
    MODEL_DIMENSION = "model"
    FEATURE_DIMENSION = "feature"


def service_name() -> str:
    """The Powertools service name: parent and child loggers must agree on it or child logs are lost."""
    return os.environ.get(Env.POWERTOOLS_SERVICE_NAME) or Metric.SERVICE


def metrics_namespace() -> str:
    """The EMF namespace: Powertools' standard variable, else the kit's (alarms and dashboards use it)."""
    return os.environ.get(Env.POWERTOOLS_METRICS_NAMESPACE) or Metric.NAMESPACE


_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HOOK = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_FIELD = re.compile(r"^[^\s]+$")
_VARIANT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _check_uri(value: str) -> str:
    if not value.startswith(("s3://", "file://", "/")):
        raise ValueError("must be s3://bucket/key, s3://bucket/prefix/, file:///path or an absolute path")
    if value.startswith("s3://") and len(value[5:].split("/", 1)) < 2:
        raise ValueError("must name a key or prefix inside the bucket: s3://bucket/key")
    return value


def _check_sha(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    if not _SHA256.match(value):
        raise ValueError("must be 64 hexadecimal characters (a sha256 digest)")
    return value


class VariantSpec(BaseModel):
    """One A/B arm of MODEL_VARIANTS. Without `uri` the arm serves the primary MODEL_URI / MODEL_SHA256."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    weight: float = Field(gt=0, allow_inf_nan=False)
    uri: str | None = None
    sha256: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _VARIANT_NAME.match(value):
            raise ValueError("must be 1-64 characters of letters, digits, '_', '.', '-' (it is a metric dimension)")
        return value

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        return None if value is None else _check_uri(value)

    @field_validator("sha256")
    @classmethod
    def _sha(cls, value: str | None) -> str | None:
        return _check_sha(value)


def check_variants(value: Sequence[VariantSpec]) -> tuple[VariantSpec, ...]:
    """The rules across the arms of MODEL_VARIANTS: unique names, at most one arm without `uri`."""
    names = [v.name for v in value]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"variant names must be unique; repeated: {', '.join(duplicates)}")
    if sum(1 for v in value if v.uri is None) > 1:
        raise ValueError("at most one variant may omit uri (that variant serves MODEL_URI)")
    return tuple(value)


_VARIANT_LIST: TypeAdapter[list[VariantSpec]] = TypeAdapter(list[VariantSpec])


def parse_variants(items: object, *, strict: bool = False) -> tuple[VariantSpec, ...]:
    """A list of arms as MODEL_VARIANTS holds them, validated (pydantic.ValidationError for one arm, ValueError
    across arms). `strict`: numbers must be numbers, as in CDK context, not strings."""
    return check_variants(_VARIANT_LIST.validate_python(items, strict=strict))


class Settings(BaseModel):
    """Typed settings; field names are the lower-cased environment names."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    model_uri: str
    model_sha256: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    model_cache_dir: str = "/tmp/model-cache"
    model_trusted_types: tuple[str, ...] = ()
    allow_unpinned_pickle: bool = False
    # A model saved by another Python minor (pickle-based) or scikit-learn minor loads anyway (lambda_fn.model_env).
    model_allow_env_mismatch: bool = False
    output_stream_name: str | None = None
    dlq_url: str | None = None
    features_field: str | None = None
    id_field: str | None = None
    feature_hook: str | None = None
    # FEATURE_HOOK is code run with the function's role: only code the image ships, unless this says so.
    allow_external_feature_hook: bool = False
    input_schema: str | None = None
    output_max_attempts: int = Field(default=6, ge=1, le=20)
    output_base_delay_ms: int = Field(default=50, ge=0, le=10_000)
    # Lambda's synchronous payload limit is 6 MB; a lower cap refuses oversized requests before parsing.
    api_max_body_bytes: int = Field(default=1024 * 1024, ge=1, le=6 * 1024 * 1024)
    # A shadow model scored beside the primary (lambda_fn.shadow), and weighted A/B variants (lambda_fn.variants).
    shadow_model_uri: str | None = None
    shadow_model_sha256: str | None = None
    shadow_timeout_ms: int = Field(default=500, ge=1, le=60_000)
    shadow_output_stream_name: str | None = None
    model_variants: tuple[VariantSpec, ...] = ()
    # Capture and profiles (lambda_fn.monitoring.emit); off, and nothing of it imported, without CAPTURE_BUCKET.
    capture_bucket: str | None = Field(default=None, min_length=3, max_length=63,
                                       pattern=r"^[a-z0-9][a-z0-9.-]+[a-z0-9]$")  # fmt: skip
    capture_prefix: str = "monitoring"
    capture_sample_rate: float = Field(default=0.1, ge=0, le=1, allow_inf_nan=False)
    capture_payload: Literal["features", "raw"] = "features"
    capture_id_key_secret_arn: str | None = Field(default=None, pattern=r"^arn:[\w-]+:secretsmanager:")
    capture_timeout_ms: int = Field(default=200, ge=1, le=60_000)
    monitor_reference_uri: str | None = None
    monitor_reference_sha256: str | None = None
    single_row_fast_path: bool = False  # same outputs to the last bit (lambda_fn.fast_path); off until chosen

    @field_validator("model_uri", "shadow_model_uri", "monitor_reference_uri")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        return None if value is None else _check_uri(value)

    @field_validator("model_sha256", "shadow_model_sha256", "monitor_reference_sha256")
    @classmethod
    def _sha(cls, value: str | None) -> str | None:
        return _check_sha(value)

    @field_validator("model_variants", mode="before")
    @classmethod
    def _variants_json(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise ValueError(f"must be a JSON list of {{name, weight, uri, sha256}} objects: {exc}") from None
            if not isinstance(value, list):
                raise ValueError("must be a JSON list of {name, weight, uri, sha256} objects")
        return value

    @field_validator("model_variants")
    @classmethod
    def _variants(cls, value: tuple[VariantSpec, ...]) -> tuple[VariantSpec, ...]:
        return check_variants(value)

    @field_validator("feature_hook")
    @classmethod
    def _hook(cls, value: str | None) -> str | None:
        if value is not None and not _HOOK.match(value):
            raise ValueError("must be package.module:function")
        return value

    @field_validator("features_field", "id_field")
    @classmethod
    def _field(cls, value: str | None) -> str | None:
        if value is not None and not _FIELD.match(value):
            raise ValueError("must be a field name without spaces")
        return value

    @field_validator("model_trusted_types", mode="before")
    @classmethod
    def _types(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(t.strip() for t in value.split(",") if t.strip())
        return value

    @field_validator("capture_prefix")
    @classmethod
    def _capture_prefix(cls, value: str) -> str:
        return value.strip("/")

    @model_validator(mode="after")
    def _reference_pair(self) -> Settings:
        if (self.monitor_reference_uri is None) != (self.monitor_reference_sha256 is None):
            raise ValueError(
                f"{Env.MONITOR_REFERENCE_URI} and {Env.MONITOR_REFERENCE_SHA256} are set together (the release "
                "manifest's reference.uri and reference.sha256)"
            )
        return self

    def require_stream_outputs(self) -> tuple[str, str]:
        """The stream scorer cannot run without both sinks; the API function needs neither."""
        missing = [
            name
            for name, value in ((Env.OUTPUT_STREAM_NAME, self.output_stream_name), (Env.DLQ_URL, self.dlq_url))
            if not value
        ]
        if missing:
            raise ConfigError(f"missing required environment variable(s) for the stream scorer: {', '.join(missing)}")
        assert self.output_stream_name and self.dlq_url
        return self.output_stream_name, self.dlq_url


# Field names are the lower-cased environment names (see Settings): one list to keep, Settings itself.
ENV_FIELDS: Mapping[str, str] = {field.upper(): field for field in Settings.model_fields}
"""Every environment name the image reads → its `Settings` field (the local runtime and tests list them from here)."""
_unnamed = set(ENV_FIELDS) - {value for key, value in vars(Env).items() if key.isupper()}
if _unnamed:  # a setting nobody could set: give it a constant in Env
    raise RuntimeError(f"Settings fields without an Env name: {sorted(_unnamed)}")
_BOOL_FIELDS = {name for name, info in Settings.model_fields.items() if info.annotation is bool}
_BOOLS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def settings_from(environ: Mapping[str, str]) -> Settings:
    """Build settings from a mapping; every error names the environment variable at fault."""
    raw: dict[str, object] = {}
    for env, field in ENV_FIELDS.items():
        value = environ.get(env)
        if value is None or value.strip() == "":
            continue
        value = value.strip()
        if field in _BOOL_FIELDS:
            if value.lower() not in _BOOLS:
                raise ConfigError(f"{env}={value!r}: must be true or false")
            raw[field] = _BOOLS[value.lower()]
        else:
            raw[field] = value
    if "model_uri" not in raw:
        raise ConfigError(f"missing required environment variable {Env.MODEL_URI} (s3://bucket/key of the model)")
    try:
        return Settings(**raw)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            if not err["loc"]:  # a rule across settings: its message names them
                problems.append(str(err["msg"]).removeprefix("Value error, "))
                continue
            field = str(err["loc"][0])
            env = field.upper() if field in Settings.model_fields else field
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"][1:])
            problems.append(f"{env}={environ.get(env, '')!r}: {where + ': ' if where else ''}{err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Read the process environment once per container."""
    return settings_from(os.environ)


# --------------------------------------------------------------------------- the monitor function


class MonitorEnv:
    """Environment variable names read by the monitor function (`lambda_fn.handler.monitor_handler`)."""

    MONITOR_BUCKET = "MONITOR_BUCKET"  # profiles in, reports out (lambda_fn.monitoring.s3_store's layout)
    MONITOR_PREFIX = "MONITOR_PREFIX"
    MONITOR_MODEL_NAME = "MONITOR_MODEL_NAME"  # the profiles' model= partition (the scorer's model name)
    MONITOR_MODEL_SHA256 = "MONITOR_MODEL_SHA256"  # the profiles' sha256= partition (the scorer's MODEL_SHA256)
    MONITOR_MODEL_VERSION = "MONITOR_MODEL_VERSION"
    MONITOR_REFERENCE_URI = "MONITOR_REFERENCE_URI"  # the release manifest's reference.uri
    MONITOR_REFERENCE_SHA256 = "MONITOR_REFERENCE_SHA256"  # the release manifest's reference.sha256
    MONITOR_SHORT_WINDOW_MINUTES = "MONITOR_SHORT_WINDOW_MINUTES"
    MONITOR_LONG_WINDOW_HOURS = "MONITOR_LONG_WINDOW_HOURS"
    MONITOR_MIN_ROWS = "MONITOR_MIN_ROWS"  # rows below which a window claims no drift
    MONITOR_METRICS = "MONITOR_METRICS"  # publish CloudWatch metrics (PutMetricData)
    # Model quality from late labels (lambda_fn.monitoring.quality_job; docs/monitoring.md, "Model quality")
    MONITOR_LABELS = "MONITOR_LABELS"  # true: join labels under <prefix>/labels/ with the capture, every window
    MONITOR_LABEL_DELAY_MINUTES = "MONITOR_LABEL_DELAY_MINUTES"  # how late a label may arrive and still count
    MONITOR_LABEL_SPAN_MINUTES = "MONITOR_LABEL_SPAN_MINUTES"  # captured predictions scored per run
    MONITOR_LABEL_TASK = "MONITOR_LABEL_TASK"  # regression (MAE, RMSE) or classification (accuracy, F1, AUC)
    MONITOR_TRAINING_METRICS = "MONITOR_TRAINING_METRICS"  # the release's metrics, JSON: {"mae": .., "rmse": ..}
    MONITOR_ID_KEY_SECRET_ARN = "MONITOR_ID_KEY_SECRET_ARN"  # capture's CAPTURE_ID_KEY_SECRET_ARN: hash label ids
    MONITOR_COMPACT = "MONITOR_COMPACT"  # merge complete hours into hourly profiles and read those (default true)


def parse_training_metrics(text: str) -> dict[str, float]:
    """MONITOR_TRAINING_METRICS: a JSON object of metric name to a finite number; ValueError says what is wrong."""
    try:
        parsed = json.loads(text)
    except ValueError:
        raise ValueError("must be a JSON object of metric name to number") from None
    if not isinstance(parsed, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in parsed.values()
    ):
        raise ValueError("must be a JSON object of metric name to a finite number")
    return {str(k): float(v) for k, v in parsed.items()}


class MonitorSettings(BaseModel):
    """Typed settings of the monitor function; field names are the lower-cased environment names."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    monitor_bucket: str = Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]+[a-z0-9]$")
    monitor_prefix: str = "monitoring"
    monitor_model_name: str = Field(min_length=1, max_length=256)
    monitor_model_sha256: str
    monitor_model_version: str | None = None
    monitor_reference_uri: str
    monitor_reference_sha256: str
    monitor_short_window_minutes: int = Field(default=15, ge=1, le=24 * 60)
    monitor_long_window_hours: int = Field(default=24, ge=1, le=24 * 31)
    monitor_min_rows: int = Field(default=1000, ge=1)
    monitor_metrics: bool = True
    monitor_labels: bool = False
    monitor_label_delay_minutes: int = Field(default=60, ge=0, le=31 * 24 * 60)
    monitor_label_span_minutes: int = Field(default=60, ge=1, le=24 * 60)
    monitor_label_task: Literal["regression", "classification"] = "regression"
    monitor_training_metrics: str | None = None
    monitor_id_key_secret_arn: str | None = None
    monitor_compact: bool = True

    @field_validator("monitor_training_metrics")
    @classmethod
    def _training(cls, value: str | None) -> str | None:
        if value is not None:
            parse_training_metrics(value)
        return value

    def training_metrics(self) -> dict[str, float]:
        """MONITOR_TRAINING_METRICS parsed (empty when unset)."""
        return {str(k): float(v) for k, v in json.loads(self.monitor_training_metrics or "{}").items()}

    @field_validator("monitor_model_sha256", "monitor_reference_sha256")
    @classmethod
    def _sha(cls, value: str) -> str:
        checked = _check_sha(value)
        assert checked is not None
        return checked

    @field_validator("monitor_reference_uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        return _check_uri(value)

    @field_validator("monitor_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return value.strip("/")


MONITOR_ENV_FIELDS: Mapping[str, str] = {field.upper(): field for field in MonitorSettings.model_fields}
_MONITOR_REQUIRED = [name.upper() for name, info in MonitorSettings.model_fields.items() if info.is_required()]


def monitor_settings_from(environ: Mapping[str, str]) -> MonitorSettings:
    """Build the monitor's settings from a mapping; every error names the environment variable at fault."""
    missing = [env for env in _MONITOR_REQUIRED if not (environ.get(env) or "").strip()]
    if missing:
        raise ConfigError(f"missing required environment variable(s) for the monitor: {', '.join(missing)}")
    raw: dict[str, object] = {}
    for env, field in MONITOR_ENV_FIELDS.items():
        value = (environ.get(env) or "").strip()
        if not value:
            continue
        if MonitorSettings.model_fields[field].annotation is bool:
            if value.lower() not in _BOOLS:
                raise ConfigError(f"{env}={value!r}: must be true or false")
            raw[field] = _BOOLS[value.lower()]
        else:
            raw[field] = value
    try:
        return MonitorSettings(**raw)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = [
            f"{str(e['loc'][0]).upper()}={environ.get(str(e['loc'][0]).upper(), '')!r}: {e['msg']}"
            for e in exc.errors()
            if e["loc"]
        ]
        raise ConfigError("invalid monitor configuration: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_monitor_settings() -> MonitorSettings:
    """Read the monitor's settings from the process environment once per container."""
    return monitor_settings_from(os.environ)


# --------------------------------------------------------------------------- the labels function


class LabelsEnv:
    """Environment variable names read by the labels function (`lambda_fn.handler.labels_handler`)."""

    LABELS_BUCKET = "LABELS_BUCKET"  # the monitoring bucket (the monitor's MONITOR_BUCKET)
    LABELS_PREFIX = "LABELS_PREFIX"  # the monitor's MONITOR_PREFIX: labels go under <prefix>/labels/


class LabelsSettings(BaseModel):
    """Typed settings of the labels function; field names are the lower-cased environment names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    labels_bucket: str = Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]+[a-z0-9]$")
    labels_prefix: str = "monitoring"

    @field_validator("labels_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return value.strip("/")


def labels_settings_from(environ: Mapping[str, str]) -> LabelsSettings:
    """Build the labels function's settings; every error names the environment variable at fault."""
    raw = {env.lower(): value for env in (LabelsEnv.LABELS_BUCKET, LabelsEnv.LABELS_PREFIX)
           if (value := (environ.get(env) or "").strip())}  # fmt: skip
    if "labels_bucket" not in raw:
        raise ConfigError(f"missing required environment variable for the labels function: {LabelsEnv.LABELS_BUCKET}")
    try:
        return LabelsSettings(**raw)
    except ValidationError as exc:
        problems = [f"{str(e['loc'][0]).upper()}={raw.get(str(e['loc'][0]), '')!r}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("invalid labels configuration: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_labels_settings() -> LabelsSettings:
    """Read the labels function's settings from the process environment once per container."""
    return labels_settings_from(os.environ)
