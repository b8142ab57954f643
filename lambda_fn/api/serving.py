"""What a route scores with, as API answers: settings, model, hook and one request scored all-or-nothing.

Each accessor turns a server-side fault into a 503 without details (logged instead). `score` runs the
hook (optional), strict validation and one predict, and fails the request with every problem:

- 400: rows that do not match the model's input (every bad row and field named), or the hook rejects;
- 422 `unscorable_rows`: valid rows the model cannot score (it raises, or predicts NaN or Infinity) while
  it still scores its reference row (`lambda_fn.scoring`): the data, not the model, is the problem;
- 500 `model_error`: the model fails on valid input and on its reference too (a broken model or
  environment).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from lambda_fn import live, runtime
from lambda_fn.api.errors import ApiError, Problem, problems_from_rows
from lambda_fn.config import ConfigError, Settings, get_settings, service_name
from lambda_fn.model_store import LoadedModel
from lambda_fn.records import Reason
from lambda_fn.scoring import BatchResult, Hook, HookBatchError, ModelBatchError, apply_hook, score_batch

logger = Logger(service=service_name(), child=True)
_MISCONFIGURED = "the service is misconfigured; see the function logs"
_UNAVAILABLE = "the model is not available; retry later"
_UNSCORABLE = {
    Reason.MODEL_ERROR: "the model cannot score this row",
    Reason.NON_FINITE_PREDICTION: "the model predicts NaN or Infinity for this row (strict JSON has neither)",
}


def settings() -> Settings:
    try:
        return get_settings()
    except ConfigError:
        logger.exception("invalid configuration: the API cannot serve")
        raise ApiError(503, "service_unavailable", _MISCONFIGURED) from None


def model() -> LoadedModel:
    current = settings()
    try:
        loaded = runtime.get_model(current)
    except Exception:  # any load failure is a server fault: log it, answer 503 without details
        logger.exception("model failed to load", extra={"model_uri": current.model_uri})
        raise ApiError(503, "model_unavailable", _UNAVAILABLE) from None
    if current.capture_bucket:
        _capture_ready()
    return loaded


def _capture_ready() -> None:
    """Capture's init (id key, the release's reference, sha256-checked): a fault there is the environment's."""
    try:
        runtime.capture()
    except Exception:  # like a model checksum mismatch: 503 without details, the reason in the logs
        logger.exception("capture cannot start (CAPTURE_ID_KEY_SECRET_ARN or MONITOR_REFERENCE_*)")
        raise ApiError(503, "service_unavailable", _MISCONFIGURED) from None


def routed_model(key: str | None) -> tuple[LoadedModel, dict[str, str]]:
    """The primary, or with MODEL_VARIANTS the A/B variant of this request (routed whole by its first id)."""
    if settings().capture_bucket:
        _capture_ready()
    try:
        return live.choose(runtime.live_models(), key, model)
    except ApiError:
        raise
    except Exception:  # a variant that cannot load is a server fault, like the primary
        logger.exception("model variant failed to load")
        raise ApiError(503, "model_unavailable", _UNAVAILABLE) from None


def feature_hook() -> Hook | None:
    try:
        return runtime.hook()
    except ConfigError:
        logger.exception("FEATURE_HOOK cannot be loaded")
        raise ApiError(503, "service_unavailable", _MISCONFIGURED) from None


def max_body() -> int:
    try:
        return get_settings().api_max_body_bytes
    except ConfigError:
        return int(Settings.model_fields["api_max_body_bytes"].default)  # the limit before settings are valid


def after_request(
    features: list[Any],
    predictions: list[Any],
    identity: dict[str, str],
    ids: list[Any],
    result: BatchResult | None = None,
    request_id: str = "",
) -> None:
    """Shadow (bounded by SHADOW_TIMEOUT_MS, never in the answer) and per-variant metrics: lambda_fn.live; capture
    of the request and of the shadow's answer to it (bounded by CAPTURE_TIMEOUT_MS), when CAPTURE_BUCKET is set."""
    emitter = runtime.capture() if result is not None and get_settings().capture_bucket else None
    pending, on_scored = None, None
    if emitter is not None and result is not None:
        from lambda_fn.monitoring.emit import shadow_capture, start

        deployment = runtime.deployment(get_settings()) or identity
        pending = start(emitter, result, identity, ids, request_id, features, deployment)
        on_scored = shadow_capture(emitter, deployment, ids, request_id, features)
    live.after_request(runtime.live_models(), features, predictions, identity, ids, on_scored=on_scored)
    if pending is not None:
        from lambda_fn.monitoring.emit import finish

        finish(pending)


def captured(result: BatchResult, identity: dict[str, str], request_id: str, raw: list[Any]) -> None:
    """Capture of a request without shadow or ids (MLflow's and the Open Inference Protocol's routes)."""
    if not get_settings().capture_bucket:
        return
    emitter = runtime.capture()
    if emitter is not None:
        from lambda_fn.monitoring.emit import finish, start

        finish(start(emitter, result, identity, [], request_id, raw, runtime.deployment(get_settings())))


def score(rows: list[Any], loaded: LoadedModel, hook: Hook | None = None) -> list[Any]:
    """Hook (optional) → strict validation → one predict; any bad row fails the request with every problem."""
    return score_result(rows, loaded, hook).predictions


def score_result(rows: list[Any], loaded: LoadedModel, hook: Hook | None = None) -> BatchResult:
    """`score`, with the whole result (the model input after the hook, for capture).

    Validation and the hook speak about the input (400, their messages name the field). The model's own
    errors are only logged: a client sees which rows, and a 5xx when the model itself is at fault.
    """
    if not rows:
        raise ApiError(400, "invalid_input", "no rows to score", [Problem("at least one row is required", None)])
    if hook is not None:
        try:
            rows, hook_errors = apply_hook(hook, rows)
        except HookBatchError as exc:
            logger.warning("the feature hook rejected every row", extra={"error": str(exc)})
            problems = problems_from_rows({i: e.detail for i, e in exc.errors.items()})
            message = f"the feature hook rejected every row ({len(rows)})"
            raise ApiError(400, "invalid_input", message, problems) from None
        if hook_errors:
            problems = problems_from_rows({i: e.detail for i, e in hook_errors.items()})
            n = len(hook_errors)
            raise ApiError(400, "invalid_input", f"the feature hook rejected {n} of {len(rows)} row(s)", problems)
    try:
        result = score_batch(rows, loaded, strict=True, finite=True)
    except ModelBatchError as exc:
        logger.error("the model fails on valid input and on its reference row", extra={"error": str(exc)})
        raise ApiError(
            500, "model_error", "the model failed on valid input; see the function logs with this request id"
        ) from None
    if not result.errors:
        return result
    schema = {i: e.detail for i, e in result.errors.items() if e.reason == Reason.SCHEMA}
    unscorable = {i: e for i, e in result.errors.items() if e.reason != Reason.SCHEMA}
    if unscorable:
        logger.warning(
            "rows the model cannot score",
            extra={"rows": {i: f"{e.reason}: {e.detail}" for i, e in sorted(unscorable.items())[:20]}},
        )
    problems = problems_from_rows(schema)
    problems += [Problem(_UNSCORABLE.get(e.reason, "cannot be scored"), None, i) for i, e in unscorable.items()]
    problems.sort(key=lambda p: p.row or 0)
    n = len(result.errors)
    if schema:
        raise ApiError(400, "invalid_input", f"{n} of {len(rows)} row(s) do not match the model's input", problems)
    raise ApiError(422, "unscorable_rows", f"the model cannot score {n} of {len(rows)} valid row(s)", problems)
