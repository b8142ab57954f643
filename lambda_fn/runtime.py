"""Per-container wiring: settings, clients, sinks, hook and the model, each built once and cached.

Clients are created here, after configuration is read and never at import time, so tests and
emulators can point them anywhere through the SDK's standard `AWS_ENDPOINT_URL_*` variables.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from lambda_fn import heap
from lambda_fn.config import Settings, get_settings, service_name
from lambda_fn.hook_origin import require_shipped
from lambda_fn.live import LiveModels, live_models_from
from lambda_fn.model_store import LoadedModel, load_model
from lambda_fn.scoring import Hook, load_hook
from lambda_fn.sinks import KinesisSink, RetryPolicy, SqsSink
from lambda_fn.stream import StreamRuntime
from lambda_fn.variants import emf_variant_emitter

if TYPE_CHECKING:
    from lambda_fn.monitoring.emit import Emitter

_model_lock = threading.Lock()
_models: dict[str, LoadedModel] = {}
_fresh_loads: list[float] = []


def client(service: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(service, config=Config(retries={"mode": "standard", "max_attempts": 3}))  # type: ignore[call-overload]


def get_model(settings: Settings | None = None) -> LoadedModel:
    """Load once per container; a failed load is retried on the next call, never cached. The first load settles
    the container's garbage-collector policy (`lambda_fn.heap`) before it starts."""
    settings = settings or get_settings()
    key = f"{settings.model_uri}#{settings.model_sha256}"
    model = _models.get(key)
    if model is None:
        with _model_lock:
            model = _models.get(key)
            if model is None:
                heap.settle()  # once per process: see lambda_fn.heap (about 0.5 s of the cold start)
                model = load_model(settings)
                _models[key] = model
                _fresh_loads.append(model.load_seconds)
                heap.keep_loaded()  # the model lives as long as the container: out of the collector's scans
                from aws_lambda_powertools import Logger

                Logger(service=service_name(), child=True).info(
                    "model loaded",
                    extra={
                        "model": model.identity,
                        "format": model.format,
                        "load_ms": round(model.load_seconds * 1000),
                    },
                )
    return model


def drain_load_times() -> list[float]:
    """Seconds of model loads since the last call, for the ModelLoadTime metric."""
    out = list(_fresh_loads)
    _fresh_loads.clear()
    return out


@lru_cache(maxsize=1)
def hook() -> Hook | None:
    """FEATURE_HOOK, imported once per container: the stream, the API and the shadow share it.

    It runs with the function's role, so it must be code the image ships unless explicitly allowed
    (lambda_fn.hook_origin); that is checked before anything of it is imported.
    """
    settings = get_settings()
    if settings.feature_hook and not settings.allow_external_feature_hook:
        require_shipped(settings.feature_hook)
    return load_hook(settings.feature_hook)


@lru_cache(maxsize=1)
def live_models() -> LiveModels:
    """A/B variants and shadow from MODEL_VARIANTS / SHADOW_*; their models load lazily via get_model."""
    settings = get_settings()
    sink = None
    if settings.shadow_output_stream_name:
        # Few attempts: the shadow's time is bounded, and its output is best effort by design.
        policy = RetryPolicy(max_attempts=3, base_delay_s=settings.output_base_delay_ms / 1000)
        sink = KinesisSink(client("kinesis"), settings.shadow_output_stream_name, policy)
    # Only the shadow scores features itself; A/B variants get them through the caller's hook.
    return live_models_from(settings, get_model, sink, hook() if settings.shadow_model_uri else None)


def capture_client() -> Any:
    """The capture's S3 client: short timeouts and few attempts (capture is bounded by CAPTURE_TIMEOUT_MS)."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 2})  # type: ignore[typeddict-item]
    return boto3.client("s3", config=config)


@lru_cache(maxsize=1)
def capture() -> Emitter | None:
    """Capture and profiles (CAPTURE_BUCKET), built once; None, with nothing of monitoring imported, when unset.

    Reads the id-hashing key (CAPTURE_ID_KEY_SECRET_ARN) and the release's reference (MONITOR_REFERENCE_*,
    sha256-checked) here: an unreadable secret or a reference that is not the pinned one fails like a model
    checksum mismatch."""
    settings = get_settings()
    if not settings.capture_bucket:
        return None
    from lambda_fn.monitoring.setup import emitter_from

    return emitter_from(settings, client, capture_client)


def deployment(settings: Settings) -> dict[str, str] | None:
    """The model= / sha256= partitions capture files under: MODEL_NAME and MODEL_SHA256 when both are set."""
    if settings.model_name and settings.model_sha256:
        return {"name": settings.model_name, "version": settings.model_version or "", "sha256": settings.model_sha256}
    return None


@lru_cache(maxsize=1)
def stream_runtime() -> StreamRuntime:
    settings = get_settings()
    stream_name, dlq_url = settings.require_stream_outputs()
    policy = RetryPolicy(max_attempts=settings.output_max_attempts, base_delay_s=settings.output_base_delay_ms / 1000)
    return StreamRuntime(
        model=lambda: get_model(settings),
        output=KinesisSink(client("kinesis"), stream_name, policy),
        dlq=SqsSink(client("sqs"), dlq_url, policy),
        hook=hook(),
        features_field=settings.features_field,
        id_field=settings.id_field,
        variants=live_models().variants,
        shadow=live_models().shadow,
        variant_metrics=emf_variant_emitter,
        capture=capture(),
        deployment=deployment(settings),
    )


def reset() -> None:
    """Forget everything cached (tests and the local runtime change the environment between runs)."""
    _models.clear()
    heap.release()  # what get_model froze is collectable again, as it would be in a new container
    shadow = live_models().shadow if live_models.cache_info().currsize else None
    if shadow is not None:
        shadow.close()
    live_models.cache_clear()
    emitter = capture() if capture.cache_info().currsize else None
    if emitter is not None:
        emitter.close()
    capture.cache_clear()
    stream_runtime.cache_clear()
    hook.cache_clear()
    get_settings.cache_clear()
