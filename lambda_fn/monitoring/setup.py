"""The scorer's capture, built once per container from the CAPTURE_* and MONITOR_REFERENCE_* settings.

- CAPTURE_ID_KEY_SECRET_ARN: the secret's SecretString (GetSecretValue, once) is the key of both keyed hashes,
  the sampling point and the captured id (`sampling`; BLAKE2b personalisations keep them apart). A secret longer
  than 64 bytes (BLAKE2b's key limit) is first hashed with SHA-512. An unreadable or empty secret fails the
  cold start: capture never falls back to writing raw ids. Without it, sampling uses the fixed documented key
  (`sampling.DEFAULT_KEY`) and ids are written as they are.
- MONITOR_REFERENCE_URI / MONITOR_REFERENCE_SHA256: the release's reference, sha256-checked
  (`release_reference.load_reference`); a mismatch fails the cold start like a model checksum mismatch. Without
  them, capture runs, no profiles are written, and one warning says so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger

from lambda_fn.config import ConfigError, Env, Settings, service_name
from lambda_fn.monitoring.emit import CaptureConfig, Emitter
from lambda_fn.monitoring.reference import Reference
from lambda_fn.monitoring.release_reference import load_reference
from lambda_fn.monitoring.s3_store import read_s3_uri
from lambda_fn.monitoring.sampling import DEFAULT_KEY, Sampler

logger = Logger(service=service_name(), child=True)
MAX_KEY_BYTES = 64


def key_from_secret(secret: str) -> bytes:
    """The hashing key a secret string stands for: its UTF-8 bytes, or their SHA-512 when over 64 bytes."""
    raw = secret.encode("utf-8")
    if not raw:
        raise ValueError("the secret is empty")
    return raw if len(raw) <= MAX_KEY_BYTES else hashlib.sha512(raw).digest()


def read_id_key(arn: str, secrets: Any) -> bytes:
    """GetSecretValue once; ConfigError naming the variable when it cannot be read or is not a usable string."""
    try:
        value = secrets.get_secret_value(SecretId=arn).get("SecretString")
        if not isinstance(value, str):
            raise ValueError("the secret has no SecretString")
        return key_from_secret(value)
    except Exception as exc:  # noqa: BLE001 - any SDK or content error: the cold start fails, naming the setting
        raise ConfigError(
            f"{Env.CAPTURE_ID_KEY_SECRET_ARN}={arn!r}: cannot read the id-hashing key: {type(exc).__name__}: {exc}"
        ) from None


def reference_of(settings: Settings, s3: Any) -> Reference | None:
    """The release's reference (sha256-checked), or None with one warning when none is configured."""
    if settings.monitor_reference_uri is None or settings.monitor_reference_sha256 is None:
        logger.warning(
            f"capture is on but {Env.MONITOR_REFERENCE_URI} / {Env.MONITOR_REFERENCE_SHA256} are not set: "
            "records are captured, no profiles are written (the monitor sees no drift)"
        )
        return None
    return load_reference(
        settings.monitor_reference_uri, settings.monitor_reference_sha256, lambda uri: read_s3_uri(uri, s3)
    )


def emitter_from(settings: Settings, client: Callable[[str], Any], capture_client: Callable[[], Any]) -> Emitter:
    """The Emitter of CAPTURE_*; `client(service)` makes the init's clients, `capture_client()` the puts' one."""
    assert settings.capture_bucket is not None
    key = DEFAULT_KEY
    id_key = None
    if settings.capture_id_key_secret_arn:
        key = id_key = read_id_key(settings.capture_id_key_secret_arn, client("secretsmanager"))
    reference = reference_of(settings, client("s3") if _on_s3(settings) else None)
    config = CaptureConfig(
        bucket=settings.capture_bucket,
        prefix=settings.capture_prefix,
        sampler=Sampler(settings.capture_sample_rate, key, id_key),
        timeout_s=settings.capture_timeout_ms / 1000,
        raw=settings.capture_payload == "raw",
        reference=reference,
    )
    s3 = capture_client()  # made here, on the init thread: boto3 client creation is not thread-safe
    return Emitter(config, lambda: s3)


def _on_s3(settings: Settings) -> bool:
    return bool(settings.monitor_reference_uri and settings.monitor_reference_uri.startswith("s3://"))
