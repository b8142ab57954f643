"""Deployment settings read from CDK context, validated before any construct is created.

`topology()` holds what the local cloud shares (names, streams, trigger); this module adds what only
AWS has: function sizing, API auth and throttling, rollout, alarms and the models to serve. Every
error is a `TopologyError` that names the context key, so `cdk synth -c key=bad` fails with one
clear line instead of a CloudFormation error after minutes of deployment.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args
from urllib.parse import urlparse

from pydantic import ValidationError

from infra.topology import (
    MONITORING_PREFIX,
    PRIMARY_VARIANT,
    Ctx,
    Topology,
    TopologyError,
    context_bool,
    context_int,
    context_opt,
    labels_stream_on,
    topology,
)
from lambda_fn.config import MonitorSettings, Settings, parse_training_metrics, parse_variants

Architecture = Literal["arm64", "x86_64"]
ApiAuth = Literal["api-key", "iam"]
Rollout = Literal["canary", "linear", "all-at-once", "blue-green"]
ROLLOUTS: tuple[str, ...] = ("canary", "linear", "all-at-once", "blue-green")  # infra/deployments.py maps each
CapturePayload = Literal["features", "raw"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_IMAGE = re.compile(r"^[a-z0-9.-]+(?::\d+)?(?:/[a-z0-9._-]+)+(?::[\w.-]+)?(?:@sha256:[0-9a-f]{64})?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922)


@dataclass(frozen=True)
class ModelRef:
    """One artifact the functions may read: an S3 object or prefix, pinned by its sha256."""

    uri: str | None  # s3://bucket/key, or None when `key` is inside the stack's own bucket
    key: str
    sha256: str
    bucket: str | None = None  # None: the stack's model bucket

    def env_uri(self, own_bucket: str) -> str:
        return self.uri or f"s3://{own_bucket}/{self.key}"


@dataclass(frozen=True)
class Variant:
    name: str
    model: ModelRef
    weight: float


@dataclass(frozen=True)
class FunctionSizing:
    memory_mb: int
    timeout_seconds: int
    reserved_concurrency: int | None


@dataclass(frozen=True)
class MonitoringSettings:
    """Prediction monitoring (issue 14): capture on the hot path, the scheduled monitor, its alarms."""

    reference: ModelRef  # the release's reference (an S3 object), pinned by its sha256
    model_name: str  # the profiles' model= partition and the metrics' model dimension
    variants: tuple[str, ...]  # the variants the monitor sees for this model: one alarm pair each
    sample_rate: float = 0.1
    payload: CapturePayload = "features"
    hash_ids: bool = False
    capture_timeout_ms: int | None = None  # None: the runtime's default
    schedule_minutes: int = 15
    short_window_minutes: int = 15
    long_window_hours: int = 24
    capture_days: int = 30
    report_days: int = 365
    drift_alarm_features: int = 1
    quality_alarm_violations: int = 1
    prefix: str = MONITORING_PREFIX
    # Model quality from late labels (the monitor's MONITOR_LABEL* settings) and the labels stream.
    labels: bool = False
    label_delay_minutes: int = 60
    label_span_minutes: int = 60
    label_task: str = "regression"
    training_metrics: str | None = None  # canonical JSON of the release's metrics (MONITOR_TRAINING_METRICS)
    label_days: int = 30
    labels_stream: bool = False
    quality_degradation_ratio: float = 1.2
    quality_min_labels: int = 100  # LabelledRows below this: the degradation alarm does not judge the window


@dataclass(frozen=True)
class DeploySettings:
    topology: Topology
    model: ModelRef
    model_name: str | None
    model_version: str | None
    architecture: Architecture
    base_image: str | None
    scorer: FunctionSizing
    api: FunctionSizing
    api_provisioned_concurrency: int
    api_max_body_bytes: int
    log_retention_days: int
    log_level: str
    api_auth: ApiAuth
    api_rate_limit: int
    api_burst_limit: int
    api_quota_per_day: int
    rollout: Rollout
    alarms: bool
    alarm_email: str | None
    iterator_age_alarm_seconds: int
    api_p99_alarm_ms: int
    shadow: ModelRef | None = None
    shadow_timeout_ms: int = 500
    variants: tuple[Variant, ...] = field(default_factory=tuple)
    batch_scoring: bool = False
    monitoring: MonitoringSettings | None = None

    def models(self) -> list[ModelRef]:
        """Every artifact the functions load: read access is granted on exactly these."""
        refs = [self.model]
        if self.shadow:
            refs.append(self.shadow)
        refs.extend(v.model for v in self.variants)
        return refs


def _runtime_range(field: str) -> tuple[int, int, int]:
    """(default, minimum, maximum) of an integer setting, as the runtime's `Settings` declares them."""
    info = Settings.model_fields[field]
    bounds = {name: getattr(m, name) for m in info.metadata for name in ("ge", "le") if hasattr(m, name)}
    return int(info.default), int(bounds["ge"]), int(bounds["le"])


def _choice(ctx: Mapping[str, Any], key: str, default: str, choices: tuple[str, ...]) -> str:
    value = str(ctx.get(key, default)).strip().lower()
    if value not in choices:
        raise TopologyError(f"context {key}={value!r}: must be one of {', '.join(choices)}")
    return value


def _sha(ctx_key: str, value: object) -> str:
    text = str(value or "").strip().lower()
    if not _SHA256.match(text):
        raise TopologyError(
            f"context {ctx_key}={value!r}: must be the artifact's sha256 (64 hex characters; see build/release.json)"
        )
    return text


def _s3_ref(ctx_key: str, uri: object, sha_key: str, sha: object) -> ModelRef:
    text = str(uri or "").strip()
    parsed = urlparse(text)
    key = parsed.path.lstrip("/")
    if parsed.scheme != "s3" or not parsed.netloc or not key or parsed.query:
        raise TopologyError(
            f"context {ctx_key}={uri!r}: must be s3://bucket/key (a file) or s3://bucket/prefix (an MLflow model dir)"
        )
    return ModelRef(uri=text, key=key.rstrip("/"), sha256=_sha(sha_key, sha), bucket=parsed.netloc)


def _main_model(ctx: Mapping[str, Any]) -> ModelRef:
    uri, key = context_opt(ctx, Ctx.MODEL_URI, None), context_opt(ctx, Ctx.MODEL_KEY, None)
    if uri and key:
        raise TopologyError(f"context {Ctx.MODEL_URI} and {Ctx.MODEL_KEY}: give one, not both")
    if uri:
        return _s3_ref(Ctx.MODEL_URI, uri, Ctx.MODEL_SHA256, ctx.get(Ctx.MODEL_SHA256))
    if key:
        key = key.strip("/")
        if not key or key.startswith("s3:") or "?" in key:
            raise TopologyError(f"context {Ctx.MODEL_KEY}={key!r}: must be a key or prefix inside the model bucket")
        return ModelRef(uri=None, key=key, sha256=_sha(Ctx.MODEL_SHA256, ctx.get(Ctx.MODEL_SHA256)))
    raise TopologyError(
        f"context {Ctx.MODEL_URI} (s3://bucket/key of the model) or {Ctx.MODEL_KEY} (key in the stack's model bucket)"
        f" is required, with {Ctx.MODEL_SHA256}: -c {Ctx.MODEL_URI}=s3://... -c {Ctx.MODEL_SHA256}=..."
    )


def _variants(ctx: Mapping[str, Any]) -> tuple[Variant, ...]:
    """MODEL_VARIANTS as the runtime validates it (`lambda_fn.config.VariantSpec`), each arm an S3 artifact pinned
    by its sha256 (the runtime also takes local paths and unpinned arms; a deployment does not)."""
    raw = ctx.get(Ctx.MODEL_VARIANTS)
    if raw is None or (isinstance(raw, str) and raw.strip() in ("", "none", "null", "[]")):
        return ()
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise TopologyError(f"context {Ctx.MODEL_VARIANTS}: not valid JSON ({exc.msg})") from None
    if not isinstance(raw, list) or not raw:
        raise TopologyError(f"context {Ctx.MODEL_VARIANTS}: must be a JSON list of {{name, uri, sha256, weight}}")
    try:
        specs = parse_variants(raw, strict=True)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = Ctx.MODEL_VARIANTS + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        raise TopologyError(f"context {where}={err.get('input')!r}: {err['msg']}") from None
    except ValueError as exc:
        raise TopologyError(f"context {Ctx.MODEL_VARIANTS}: {exc}") from None
    out = []
    for i, (spec, item) in enumerate(zip(specs, raw, strict=True)):
        where = f"{Ctx.MODEL_VARIANTS}[{i}]"
        ref = _s3_ref(f"{where}.uri", spec.uri, f"{where}.sha256", spec.sha256)
        out.append(Variant(spec.name, ref, item["weight"]))  # the weight as given: 1 stays 1 in the environment
    return tuple(out)


def _base_image(ctx: Mapping[str, Any]) -> str | None:
    image = context_opt(ctx, Ctx.BASE_IMAGE, None)
    if image is not None and (not _IMAGE.match(image) or (":" not in image.split("/")[-1] and "@" not in image)):
        raise TopologyError(
            f"context {Ctx.BASE_IMAGE}={image!r}: must be registry/repository:tag and/or @sha256:<64 hex>"
        )
    return image


def context_share(ctx: Mapping[str, Any], key: str, default: float) -> float:
    """`ctx[key]` as a finite number in [0, 1] (`default` when absent)."""
    value = ctx.get(key, default)
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not 0.0 <= number <= 1.0:  # also NaN
        raise TopologyError(f"context {key}={value!r}: must be a number between 0 and 1 (a share of the records)")
    return number


def _reference(ctx: Mapping[str, Any]) -> ModelRef:
    uri = context_opt(ctx, Ctx.MODEL_REFERENCE_URI, None)
    if uri is None:
        raise TopologyError(
            f"context {Ctx.MODEL_REFERENCE_URI} (the release manifest's reference.uri) is required with "
            f"{Ctx.MONITORING}=true, with {Ctx.MODEL_REFERENCE_SHA256}: see build/release.json"
        )
    ref = _s3_ref(Ctx.MODEL_REFERENCE_URI, uri, Ctx.MODEL_REFERENCE_SHA256, ctx.get(Ctx.MODEL_REFERENCE_SHA256))
    if uri.strip().endswith("/"):
        raise TopologyError(f"context {Ctx.MODEL_REFERENCE_URI}={uri!r}: must be the reference's object, not a prefix")
    return ref


def _monitored_variants(model: ModelRef, variants: tuple[Variant, ...]) -> tuple[str, ...]:
    """The variants whose profiles the monitor reads: those serving `model` (the release the reference is of)."""
    if not variants:
        return (PRIMARY_VARIANT,)
    names = tuple(v.name for v in variants if v.model.sha256 == model.sha256)
    if not names:
        raise TopologyError(
            f"context {Ctx.MODEL_VARIANTS}: no arm serves {Ctx.MODEL_SHA256}={model.sha256}, the model whose "
            f"reference {Ctx.MODEL_REFERENCE_URI} gives; the monitor would see no profiles"
        )
    return names


def _windows(ctx: Mapping[str, Any]) -> dict[str, int]:
    short = context_int(ctx, Ctx.MONITORING_SHORT_WINDOW_MINUTES, 15, 1, 24 * 60)
    long = context_int(ctx, Ctx.MONITORING_LONG_WINDOW_HOURS, 24, 1, 24 * 31)
    capture_days = context_int(ctx, Ctx.MONITORING_CAPTURE_DAYS, 30, 1, 3650)
    if long * 60 < short:
        raise TopologyError(
            f"context {Ctx.MONITORING_LONG_WINDOW_HOURS}={long}: shorter than "
            f"{Ctx.MONITORING_SHORT_WINDOW_MINUTES}={short}"
        )
    if capture_days * 24 < long:
        raise TopologyError(
            f"context {Ctx.MONITORING_CAPTURE_DAYS}={capture_days}: profiles would expire before the long window "
            f"({Ctx.MONITORING_LONG_WINDOW_HOURS}={long}) has read them"
        )
    return {
        "schedule_minutes": context_int(ctx, Ctx.MONITORING_SCHEDULE_MINUTES, 15, 1, 24 * 60),
        "short_window_minutes": short,
        "long_window_hours": long,
        "capture_days": capture_days,
        "report_days": context_int(ctx, Ctx.MONITORING_REPORT_DAYS, 365, 1, 3650),
    }


def _monitor_field(field: str) -> tuple[Any, int, int]:
    """(default, minimum, maximum) of an integer setting of the monitor, as `lambda_fn.config.MonitorSettings`
    declares it: the context's defaults and bounds are the runtime's."""
    info = MonitorSettings.model_fields[field]
    bounds = {name: getattr(m, name) for m in info.metadata for name in ("ge", "le") if hasattr(m, name)}
    return info.default, int(bounds["ge"]), int(bounds["le"])


def _training_metrics(ctx: Mapping[str, Any]) -> str | None:
    """The release manifest's `metrics` (a JSON object, or its text) as canonical JSON, checked as the monitor does."""
    raw = ctx.get(Ctx.MODEL_TRAINING_METRICS)
    if raw is None or (isinstance(raw, str) and raw.strip() in ("", "none", "null", "{}")):
        return None
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else raw
        text = json.dumps(parsed, sort_keys=True, separators=(",", ":"), allow_nan=False)
        parse_training_metrics(text)  # the monitor's own check
    except (TypeError, ValueError) as exc:
        reason = str(exc) if "JSON object" in str(exc) else "must be a JSON object of metric name to number"
        raise TopologyError(
            f"context {Ctx.MODEL_TRAINING_METRICS}={raw!r}: {reason} (the release manifest's metrics, e.g. "
            '{"mae": 3.1, "rmse": 4.4})'
        ) from None
    return text


def _labels(ctx: Mapping[str, Any], capture_days: int) -> dict[str, Any]:
    """The label keys (model quality from late labels, the labels stream), each checked whenever given."""
    delay = context_int(ctx, Ctx.MONITORING_LABEL_DELAY_MINUTES, *_monitor_field("monitor_label_delay_minutes"))
    span = context_int(ctx, Ctx.MONITORING_LABEL_SPAN_MINUTES, *_monitor_field("monitor_label_span_minutes"))
    tasks = get_args(MonitorSettings.model_fields["monitor_label_task"].annotation)
    default_task = str(MonitorSettings.model_fields["monitor_label_task"].default)
    label_days = context_int(ctx, Ctx.MONITORING_LABEL_DAYS, capture_days, 1, 3650)
    if label_days * 24 * 60 < delay + span:
        raise TopologyError(
            f"context {Ctx.MONITORING_LABEL_DAYS}={label_days}: labels would expire before the quality job has read "
            f"them ({Ctx.MONITORING_LABEL_DELAY_MINUTES} + {Ctx.MONITORING_LABEL_SPAN_MINUTES} = {delay + span} min)"
        )
    ratio = ctx.get(Ctx.MONITORING_QUALITY_DEGRADATION_RATIO, 1.2)
    try:
        number = float(ratio) if not isinstance(ratio, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not 1.0 <= number <= 100.0:  # also NaN
        raise TopologyError(
            f"context {Ctx.MONITORING_QUALITY_DEGRADATION_RATIO}={ratio!r}: must be a number from 1 to 100 (the "
            "worst metric's ratio to training, > 1 worse; 1.2 = 20 % worse)"
        )
    labels = context_bool(ctx, Ctx.MONITORING_LABELS, bool(MonitorSettings.model_fields["monitor_labels"].default))
    stream = labels_stream_on(ctx)  # the topology's (the local cloud's too)
    return {
        "labels": labels,
        "label_delay_minutes": delay,
        "label_span_minutes": span,
        "label_task": _choice(ctx, Ctx.MONITORING_LABEL_TASK, default_task, tasks),
        "training_metrics": _training_metrics(ctx),
        "label_days": label_days,
        "labels_stream": stream,
        "quality_degradation_ratio": number,
        # Fewer labels make the ratio noise (an RMSE over 10 rows): no alarm below this count (metric math).
        "quality_min_labels": context_int(ctx, Ctx.MONITORING_QUALITY_MIN_LABELS, 100, 1, 10_000_000),
    }


def monitoring_settings(
    ctx: Mapping[str, Any], model: ModelRef, model_name: str | None, variants: tuple[Variant, ...]
) -> MonitoringSettings | None:
    """The `monitoring*` keys, each checked whenever given; None unless monitoring=true."""
    timeout = context_opt(ctx, Ctx.MONITORING_CAPTURE_TIMEOUT_MS, None)
    windows = _windows(ctx)
    options = {
        "sample_rate": context_share(ctx, Ctx.MONITORING_SAMPLE_RATE, 0.1),
        "payload": _choice(ctx, Ctx.MONITORING_PAYLOAD, "features", ("features", "raw")),
        "hash_ids": context_bool(ctx, Ctx.MONITORING_HASH_IDS, False),
        "capture_timeout_ms": None
        if timeout is None
        else context_int(ctx, Ctx.MONITORING_CAPTURE_TIMEOUT_MS, 0, 1, 60_000),
        "drift_alarm_features": context_int(ctx, Ctx.MONITORING_DRIFT_ALARM_FEATURES, 1, 1, 1000),
        "quality_alarm_violations": context_int(ctx, Ctx.MONITORING_QUALITY_ALARM_VIOLATIONS, 1, 1, 1000),
        **windows,
        **_labels(ctx, windows["capture_days"]),
    }
    if not context_bool(ctx, Ctx.MONITORING, False):
        return None
    if not model_name:
        raise TopologyError(
            f"context {Ctx.MODEL_NAME} is required with {Ctx.MONITORING}=true: the monitor reads the profiles "
            "under model=<name> and publishes its metrics with that model dimension"
        )
    return MonitoringSettings(
        reference=_reference(ctx),
        model_name=model_name,
        variants=_monitored_variants(model, variants),
        **options,  # type: ignore[arg-type]
    )


def deploy_settings(ctx: Mapping[str, Any] | None = None) -> DeploySettings:
    """Validate the whole context once; the stack only reads the result."""
    ctx = ctx or {}
    topo = topology(ctx)
    shadow_uri = context_opt(ctx, Ctx.SHADOW_MODEL_URI, None)
    shadow = (
        _s3_ref(Ctx.SHADOW_MODEL_URI, shadow_uri, Ctx.SHADOW_MODEL_SHA256, ctx.get(Ctx.SHADOW_MODEL_SHA256))
        if shadow_uri
        else None
    )
    if shadow is None and context_opt(ctx, Ctx.SHADOW_MODEL_SHA256, None):
        raise TopologyError(f"context {Ctx.SHADOW_MODEL_SHA256} given without {Ctx.SHADOW_MODEL_URI}")
    retention = context_int(ctx, Ctx.LOG_RETENTION_DAYS, 30, 1, 3653)
    if retention not in LOG_RETENTION_DAYS:
        raise TopologyError(
            f"context {Ctx.LOG_RETENTION_DAYS}={retention}: CloudWatch Logs accepts "
            + ", ".join(map(str, LOG_RETENTION_DAYS))
        )
    email = context_opt(ctx, Ctx.ALARM_EMAIL, None)
    if email and not _EMAIL.match(email):
        raise TopologyError(f"context {Ctx.ALARM_EMAIL}={email!r}: must be an e-mail address")
    rate = context_int(ctx, Ctx.API_RATE_LIMIT, 100, 1, 10_000)
    burst = context_int(ctx, Ctx.API_BURST_LIMIT, 200, 1, 5_000)
    scorer_reserved = context_int(ctx, Ctx.RESERVED_CONCURRENCY, 0, 0, 1000)
    api_reserved = context_int(ctx, Ctx.API_RESERVED_CONCURRENCY, 0, 0, 1000)
    provisioned = context_int(ctx, Ctx.API_PROVISIONED_CONCURRENCY, 0, 0, 1000)
    if api_reserved and provisioned > api_reserved:
        raise TopologyError(
            f"context {Ctx.API_PROVISIONED_CONCURRENCY}={provisioned}: "
            f"exceeds {Ctx.API_RESERVED_CONCURRENCY}={api_reserved}"
        )
    main, model_name, variants = _main_model(ctx), context_opt(ctx, Ctx.MODEL_NAME, None), _variants(ctx)
    return DeploySettings(
        topology=topo,
        model=main,
        model_name=model_name,
        model_version=context_opt(ctx, Ctx.MODEL_VERSION, None),
        architecture=_choice(ctx, Ctx.ARCHITECTURE, "arm64", ("arm64", "x86_64")),  # type: ignore[arg-type]
        base_image=_base_image(ctx),
        # The scorer takes long batches (a cold model load plus up to batch_size rows); the API answers one request.
        scorer=FunctionSizing(
            context_int(ctx, Ctx.MEMORY_MB, 2048, 128, 10_240),
            context_int(ctx, Ctx.TIMEOUT_SECONDS, 120, 10, 900),
            scorer_reserved or None,
        ),
        api=FunctionSizing(
            context_int(ctx, Ctx.API_MEMORY_MB, 1536, 128, 10_240),
            context_int(ctx, Ctx.API_TIMEOUT_SECONDS, 29, 3, 29),
            api_reserved or None,
        ),
        api_provisioned_concurrency=provisioned,
        api_max_body_bytes=context_int(ctx, Ctx.API_MAX_BODY_BYTES, *_runtime_range("api_max_body_bytes")),
        log_retention_days=retention,
        log_level=_choice(ctx, Ctx.LOG_LEVEL, "info", ("debug", "info", "warning", "error")).upper(),
        api_auth=_choice(ctx, Ctx.API_AUTH, "api-key", ("api-key", "iam")),  # type: ignore[arg-type]
        api_rate_limit=rate,
        api_burst_limit=burst,
        api_quota_per_day=context_int(ctx, Ctx.API_QUOTA_PER_DAY, 1_000_000, 1, 1_000_000_000),
        rollout=_choice(ctx, Ctx.ROLLOUT, "canary", ROLLOUTS),  # type: ignore[arg-type]
        alarms=context_bool(ctx, Ctx.ALARMS, True),
        alarm_email=email,
        iterator_age_alarm_seconds=context_int(ctx, Ctx.ITERATOR_AGE_ALARM_SECONDS, 300, 1, 604_800),
        api_p99_alarm_ms=context_int(ctx, Ctx.API_P99_ALARM_MS, 1000, 10, 29_000),
        shadow=shadow,
        shadow_timeout_ms=context_int(ctx, Ctx.SHADOW_TIMEOUT_MS, *_runtime_range("shadow_timeout_ms")),
        variants=variants,
        batch_scoring=context_bool(ctx, Ctx.BATCH_SCORING, False),
        monitoring=monitoring_settings(ctx, main, model_name, variants),
    )
