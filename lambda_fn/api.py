"""The synchronous prediction API: routes over the same model store, validation and scoring as the stream.

One entry point, `handle(event, context)`, serves API Gateway REST (payload v1), HTTP API (v2) and
Lambda function URL events through Powertools' event handler (one resolver per payload format, the
same routes on each). Routes:

- `POST /predict`: raw objects like the stream's payloads (FEATURES_FIELD / ID_FIELD / FEATURE_HOOK);
- `POST /invocations`: MLflow's scoring protocol (JSON or CSV), the model's own columns, no hook;
- `POST /v2/models/{name}/infer`, `GET /v2/models/{name}[/ready]`, `GET /v2/health/{live,ready}`:
  the Open Inference Protocol;
- `GET /health` (and `/ping`, as MLflow and SageMaker probe it), `GET /model`, `GET /openapi.json`.

A request is all-or-nothing. Who is at fault decides the status, and errors share one body,
`{"error": {"code", "message", "details": [{"row", "field", "message"}]}, "request_id"}`:

- 400: the request cannot be read or does not match the model's input (every bad row and field named);
- 422 `unscorable_rows`: valid rows the model cannot score (it raises, or predicts NaN or Infinity) while
  it still scores its reference row (`lambda_fn.scoring`): the data, not the model, is the problem;
- 500 `model_error`: the model fails on valid input and on its reference too (a broken model or
  environment); 503: the model cannot load or the configuration is invalid.

A 5xx never carries an exception's text (logged with the request id instead), and every body is strict
JSON: NaN, Infinity or a number beyond a double are refused on the way in and never written on the way out.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import (
    APIGatewayHttpResolver,
    APIGatewayRestResolver,
    LambdaFunctionUrlResolver,
    Response,
)
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from lambda_fn import live, runtime
from lambda_fn.api_inputs import (
    V2_DATATYPE,
    InputError,
    Problem,
    csv_rows,
    mlflow_json_rows,
    parse_json,
    v2_datatype,
    v2_rows,
)
from lambda_fn.config import ConfigError, Metric, Settings, get_settings, service_name
from lambda_fn.model_store import LoadedModel
from lambda_fn.records import Reason, record_id
from lambda_fn.scoring import Hook, ModelBatchError, apply_hook, score_batch
from lambda_fn.stream import MetricsLike

API_TITLE = "Model serving API"
API_VERSION = "1.0.0"
JSON = "application/json"
CSV = "text/csv"

logger = Logger(service=service_name(), child=True)
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_QUOTED = re.compile(r"'([^']+)'")


@dataclass(slots=True)
class ApiError(Exception):
    """An answer other than 2xx; raised anywhere below a route, rendered in one place."""

    status: int
    code: str
    message: str
    details: list[Problem] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- responses


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response[str]:
    """Strict JSON or nothing: a value it cannot spell (NaN) raises, and the request is a 500, never a
    body a strict client cannot parse. Predictions reach here checked (`score_batch(finite=True)`)."""
    return Response(status_code=status, content_type=JSON, body=_encode(body), headers=headers or {})


def _error_body(err: ApiError, request_id: str) -> dict[str, Any]:
    details = [{"row": p.row, "field": p.field, "message": p.message} for p in err.details]
    return {"error": {"code": err.code, "message": err.message, "details": details}, "request_id": request_id}


def _problems_from_rows(errors: dict[int, str]) -> list[Problem]:
    """Row messages from validation ("field 'x' must be ...; missing required field 'y'") → one detail each."""
    out = []
    for row in sorted(errors):
        for part in errors[row].split("; "):
            names = _QUOTED.findall(part)
            out.append(Problem(part, names[0] if len(names) == 1 else (", ".join(names) or None), row))
    return out


# --------------------------------------------------------------------------- per-container state


def _settings() -> Settings:
    try:
        return get_settings()
    except ConfigError:
        logger.exception("invalid configuration: the API cannot serve")
        raise ApiError(503, "service_unavailable", "the service is misconfigured; see the function logs") from None


def _model() -> LoadedModel:
    settings = _settings()
    try:
        return runtime.get_model(settings)
    except Exception:  # any load failure is a server fault: log it, answer 503 without details
        logger.exception("model failed to load", extra={"model_uri": settings.model_uri})
        raise ApiError(503, "model_unavailable", "the model is not available; retry later") from None


def _routed_model(key: str | None) -> tuple[LoadedModel, dict[str, str]]:
    """The primary, or with MODEL_VARIANTS the A/B variant of this request (routed whole by its first id)."""
    try:
        return live.choose(runtime.live_models(), key, _model)
    except ApiError:
        raise
    except Exception:  # a variant that cannot load is a server fault, like the primary
        logger.exception("model variant failed to load")
        raise ApiError(503, "model_unavailable", "the model is not available; retry later") from None


def _feature_hook() -> Hook | None:
    try:
        return runtime.hook()
    except ConfigError:
        logger.exception("FEATURE_HOOK cannot be loaded")
        raise ApiError(503, "service_unavailable", "the service is misconfigured; see the function logs") from None


def _max_body() -> int:
    try:
        return get_settings().api_max_body_bytes
    except ConfigError:
        return int(Settings.model_fields["api_max_body_bytes"].default)  # the limit before settings are valid


# --------------------------------------------------------------------------- request helpers


def _media_type(app: ApiGatewayResolver) -> tuple[str, dict[str, str]]:
    raw = app.current_event.headers.get("content-type") or app.current_event.headers.get("Content-Type") or ""
    parts = [p.strip() for p in raw.split(";")]
    params = {k.strip().lower(): v.strip().strip('"') for k, _, v in (p.partition("=") for p in parts[1:] if p)}
    return parts[0].lower(), params


def _body_text(app: ApiGatewayResolver, allowed: tuple[str, ...]) -> tuple[str, str]:
    """The request body as text and its media type; 415 for other types or charsets."""
    media, params = _media_type(app)
    if media == "" and JSON in allowed:
        media = JSON  # clients that omit Content-Type (curl --data-raw, fetch) mean JSON here
    if media not in allowed:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type {media or '(none)'!r} is not supported here; use {' or '.join(allowed)}",
        )
    charset = params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise ApiError(415, "unsupported_media_type", f"charset {charset!r} is not supported; send UTF-8")
    event = app.current_event
    raw = event.body or ""
    try:
        if event.is_base64_encoded:
            raw = base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        raise ApiError(400, "malformed_body", "the body is not valid UTF-8 text") from None
    if not raw.strip():
        raise ApiError(400, "empty_body", "the request body is empty")
    return raw, media


def _json_body(app: ApiGatewayResolver) -> Any:
    text, _ = _body_text(app, (JSON,))
    try:
        return parse_json(text)
    except InputError as exc:
        raise ApiError(400, "malformed_json", exc.message) from None


def _bad_input(exc: InputError) -> ApiError:
    return ApiError(400, "invalid_input", exc.message, exc.problems)


_UNSCORABLE = {
    Reason.MODEL_ERROR: "the model cannot score this row",
    Reason.NON_FINITE_PREDICTION: "the model predicts NaN or Infinity for this row (strict JSON has neither)",
}


def _score(rows: list[Any], model: LoadedModel, hook: Hook | None = None) -> list[Any]:
    """Hook (optional) → strict validation → one predict; any bad row fails the request with every problem.

    Validation and the hook speak about the input (400, their messages name the field). The model's own
    errors are only logged: a client sees which rows, and a 5xx when the model itself is at fault.
    """
    if not rows:
        raise ApiError(400, "invalid_input", "no rows to score", [Problem("at least one row is required", None)])
    if hook is not None:
        try:
            rows, hook_errors = apply_hook(hook, rows)
        except ModelBatchError as exc:
            logger.warning("the feature hook rejected every row", extra={"error": str(exc)})
            raise ApiError(400, "invalid_input", "the feature hook rejected every row") from None
        if hook_errors:
            problems = _problems_from_rows({i: e.detail for i, e in hook_errors.items()})
            raise ApiError(400, "invalid_input", "the feature hook rejected some rows", problems)
    try:
        result = score_batch(rows, model, strict=True, finite=True)
    except ModelBatchError as exc:
        logger.error("the model fails on valid input and on its reference row", extra={"error": str(exc)})
        raise ApiError(
            500, "model_error", "the model failed on valid input; see the function logs with this request id"
        ) from None
    if not result.errors:
        return result.predictions
    schema = {i: e.detail for i, e in result.errors.items() if e.reason == Reason.SCHEMA}
    unscorable = {i: e for i, e in result.errors.items() if e.reason != Reason.SCHEMA}
    if unscorable:
        logger.warning(
            "rows the model cannot score",
            extra={"rows": {i: f"{e.reason}: {e.detail}" for i, e in sorted(unscorable.items())[:20]}},
        )
    problems = _problems_from_rows(schema)
    problems += [Problem(_UNSCORABLE.get(e.reason, "cannot be scored"), None, i) for i, e in unscorable.items()]
    problems.sort(key=lambda p: p.row or 0)
    n = len(result.errors)
    if schema:
        raise ApiError(400, "invalid_input", f"{n} of {len(rows)} row(s) do not match the model's input", problems)
    raise ApiError(422, "unscorable_rows", f"the model cannot score {n} of {len(rows)} valid row(s)", problems)


# --------------------------------------------------------------------------- routes


RouteFn = Callable[..., Response[str]]
ROUTES: list[tuple[str, str, RouteFn]] = []  # (method, rule, function): resolvers, the 405 check and the docs


def _route(method: str, rule: str) -> Callable[[RouteFn], RouteFn]:
    def register(fn: RouteFn) -> RouteFn:
        ROUTES.append((method, rule, fn))
        return fn

    return register


@_route("POST", "/predict")
def predict(app: ApiGatewayResolver) -> Response[str]:
    """Score raw payloads the way the stream does: one object, or `{"instances": [...]}`."""
    body = _json_body(app)
    if isinstance(body, dict) and isinstance(body.get("instances"), list):
        payloads: list[Any] = body["instances"]
    elif isinstance(body, dict):
        payloads = [body]
    else:
        raise ApiError(
            400,
            "invalid_input",
            'the body must be a JSON object, or {"instances": [objects]}',
            [Problem("must be an object", None)],
        )
    settings = _settings()
    features_field, id_field = settings.features_field, settings.id_field
    problems: list[Problem] = []
    features: list[Any] = []
    ids: list[Any] = []
    for i, payload in enumerate(payloads):
        if not isinstance(payload, dict):
            problems.append(Problem("each instance must be a JSON object", None, i))
            continue
        feats: Any = payload
        if features_field:
            if features_field not in payload:
                problems.append(Problem(f"missing field '{features_field}' (the features)", features_field, i))
                continue
            feats = payload[features_field]
        features.append(feats)
        if id_field:
            ids.append(record_id(payload, feats, id_field))
    if problems:
        raise ApiError(400, "invalid_input", "some instances cannot be read", problems)
    hook = _feature_hook()  # before the model: a bad FEATURE_HOOK is a misconfiguration, not a model fault
    model, identity = _routed_model(next((str(i) for i in ids if i is not None and i != ""), None))
    predictions = _score(features, model, hook)
    # Shadow (bounded by SHADOW_TIMEOUT_MS, never in the answer) and per-variant metrics: lambda_fn.live.
    live.after_request(runtime.live_models(), features, predictions, identity, ids)
    out: dict[str, Any] = {"predictions": predictions}
    if id_field:
        out["ids"] = ids
    out["model"] = identity
    return _json(out)


@_route("POST", "/invocations")
def invocations(app: ApiGatewayResolver) -> Response[str]:
    """MLflow's scoring protocol: what `mlflow models serve` accepts for this model, JSON or CSV."""
    text, media = _body_text(app, (JSON, CSV))
    model = _model()
    try:
        if media == CSV:
            rows = csv_rows(text, model.signature)
        else:
            try:
                body = parse_json(text)
            except InputError as exc:
                raise ApiError(400, "malformed_json", exc.message) from None
            rows, params = mlflow_json_rows(body, model.signature)
            if params:
                logger.warning("ignoring 'params': the model's predict takes none", extra={"params": sorted(params)})
    except InputError as exc:
        raise _bad_input(exc) from None
    return _json({"predictions": _score(rows, model)})


def _check_name(name: str, model: LoadedModel) -> None:
    if name != model.name:
        raise ApiError(404, "model_not_found", f"no model named {name!r}; this endpoint serves {model.name!r}")


def _v2_metadata(model: LoadedModel) -> dict[str, Any]:
    inputs = []
    if model.signature is not None:
        inputs = [{"name": c.name, "datatype": V2_DATATYPE[c.type], "shape": [-1]} for c in model.signature.inputs]
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": f"servingkit-{model.format}",
        "inputs": inputs,
        "outputs": [{"name": "predict", "datatype": _signature_output_type(model), "shape": [-1]}],
    }


def _signature_output_type(model: LoadedModel) -> str:
    outputs = model.signature.outputs if model.signature else None
    if isinstance(outputs, list) and len(outputs) == 1 and isinstance(outputs[0], dict):
        spec = outputs[0]
        dtype = str((spec.get("tensor-spec") or {}).get("dtype") or spec.get("type") or "")
        return {"float64": "FP64", "float32": "FP32", "int64": "INT64", "int32": "INT32", "double": "FP64"}.get(
            dtype, V2_DATATYPE.get(dtype, "FP64")
        )
    return "FP64"


@_route("GET", "/v2/models/<name>")
def v2_model_metadata(app: ApiGatewayResolver, name: str) -> Response[str]:
    """Open Inference Protocol model metadata."""
    model = _model()
    _check_name(name, model)
    return _json(_v2_metadata(model))


@_route("GET", "/v2/models/<name>/ready")
def v2_model_ready(app: ApiGatewayResolver, name: str) -> Response[str]:
    """Open Inference Protocol model readiness."""
    model = _model()
    _check_name(name, model)
    return _json({"name": model.name, "ready": True})


@_route("POST", "/v2/models/<name>/infer")
def v2_infer(app: ApiGatewayResolver, name: str) -> Response[str]:
    """Open Inference Protocol inference: one column tensor per model input."""
    body = _json_body(app)
    model = _model()
    _check_name(name, model)
    try:
        rows = v2_rows(body, model.signature)
    except InputError as exc:
        raise _bad_input(exc) from None
    predictions = _score(rows, model)
    if predictions and all(isinstance(p, dict) for p in predictions):
        keys = list(predictions[0])
        outputs = []
        for key in keys:
            col = [p.get(key) for p in predictions]
            outputs.append({"name": str(key), "datatype": v2_datatype(col), "shape": [len(col)], "data": col})
    else:
        outputs = [
            {"name": "predict", "datatype": v2_datatype(predictions), "shape": [len(predictions)], "data": predictions}
        ]
    rid = body.get("id") if isinstance(body.get("id"), str) else None
    out: dict[str, Any] = {"model_name": model.name, "model_version": model.version, "outputs": outputs}
    if rid is not None:
        out["id"] = rid
    return _json(out)


@_route("GET", "/v2/health/live")
def v2_live(app: ApiGatewayResolver) -> Response[str]:
    """Open Inference Protocol liveness: the function answers."""
    return _json({"live": True})


@_route("GET", "/v2/health/ready")
def v2_ready(app: ApiGatewayResolver) -> Response[str]:
    """Open Inference Protocol readiness: the model is loaded (loading it if needed)."""
    _model()
    return _json({"ready": True})


def _health(app: ApiGatewayResolver) -> Response[str]:
    model = _model()
    return _json({"status": "ok", "model": model.identity})


@_route("GET", "/health")
def health(app: ApiGatewayResolver) -> Response[str]:
    """200 when the model is loaded (loading it on a cold container), 503 when it cannot be."""
    return _health(app)


@_route("GET", "/ping")
def ping(app: ApiGatewayResolver) -> Response[str]:
    """Same as /health, under the path MLflow's scoring client and SageMaker probe."""
    return _health(app)


@_route("GET", "/model")
def model_info(app: ApiGatewayResolver) -> Response[str]:
    """What is being served: identity, format, signature and when and how fast it loaded."""
    model = _model()
    settings = _settings()
    return _json(
        {
            **model.identity,
            "format": model.format,
            "signature": model.signature.to_dict() if model.signature else None,
            "loaded_at": datetime.fromtimestamp(model.loaded_at, UTC).isoformat(),
            "load_seconds": round(model.load_seconds, 4),
            "feature_hook": settings.feature_hook,
            "features_field": settings.features_field,
            "id_field": settings.id_field,
        }
    )


@_route("GET", "/openapi.json")
def openapi(app: ApiGatewayResolver) -> Response[str]:
    """This API's OpenAPI 3.1 document, with the served model's columns when it is loaded."""
    from lambda_fn.api_openapi import openapi_json

    try:
        text = openapi_json(_model(), _settings())
    except ApiError:
        text = openapi_json()  # still useful while the model is unavailable
    return Response(status_code=200, content_type=JSON, body=text)


_PATTERNS = [(method, re.compile("^" + re.sub(r"<\w+>", r"[^/]+", rule) + "/*$")) for method, rule, _ in ROUTES]


def allowed_methods(path: str) -> list[str]:
    """Methods that have a route for this path (empty: the path is unknown)."""
    return sorted({method for method, pattern in _PATTERNS if pattern.match(path)})


# --------------------------------------------------------------------------- resolvers


def _bind(app: ApiGatewayResolver, fn: Callable[..., Response[str]]) -> Callable[..., Response[str]]:
    def route(**params: str) -> Response[str]:
        return fn(app, **params)

    route.__name__ = fn.__name__
    route.__doc__ = fn.__doc__
    # Powertools reads path parameters (for the OpenAPI document) from the signature: drop `app`.
    sig = inspect.signature(fn)
    route.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])  # type: ignore[attr-defined]
    return route


def build_resolver(kind: str) -> ApiGatewayResolver:
    """A resolver for one payload format with every route; built once per format per container."""
    app: ApiGatewayResolver
    if kind == "rest":
        app = APIGatewayRestResolver()
    elif kind == "http":
        app = APIGatewayHttpResolver()
    else:
        app = LambdaFunctionUrlResolver()
    for method, rule, fn in ROUTES:
        summary = (fn.__doc__ or "").split("\n")[0]
        app.route(rule, method, summary=summary, operation_id=fn.__name__)(_bind(app, fn))

    @app.not_found
    def _not_found(_: NotFoundError) -> Response[str]:
        path = app.current_event.path
        methods = allowed_methods(path)
        if methods:
            raise ApiError(
                405,
                "method_not_allowed",
                f"{app.current_event.http_method} is not allowed on {path}; use {', '.join(methods)}",
                headers={"Allow": ", ".join(methods)},
            )
        raise ApiError(404, "not_found", f"no route {path}; see GET /openapi.json")

    def _api_error(err: ApiError) -> Response[str]:
        if err.status >= 500:
            logger.error("request failed", extra={"status": err.status, "code": err.code})
        else:
            logger.info("request rejected", extra={"status": err.status, "code": err.code, "error": err.message})
        body = _error_body(err, _request_id(app.current_event.raw_event, app.lambda_context))
        return Response(status_code=err.status, content_type=JSON, body=_encode(body), headers=dict(err.headers))

    def _crash(exc: Exception) -> Response[str]:
        logger.exception("unhandled error")
        err = ApiError(500, "internal_error", "internal error; see the function logs with this request id")
        body = _error_body(err, _request_id(app.current_event.raw_event, app.lambda_context))
        return Response(status_code=500, content_type=JSON, body=_encode(body))

    app.exception_handler(ApiError)(_api_error)
    app.exception_handler(Exception)(_crash)
    return app


@lru_cache(maxsize=3)
def resolver(kind: str) -> ApiGatewayResolver:
    return build_resolver(kind)


def payload_kind(event: dict[str, Any]) -> str:
    """REST API v1, HTTP API v2 or a function URL (v2 format, no routeKey of its own)."""
    if event.get("version") == "2.0":
        domain = str((event.get("requestContext") or {}).get("domainName", ""))
        return "url" if ".lambda-url." in domain else "http"
    return "rest"


def _request_id(event: dict[str, Any], context: Any) -> str:
    rid = (event.get("requestContext") or {}).get("requestId")
    return str(rid or getattr(context, "aws_request_id", "") or "")


def _body_size(event: dict[str, Any]) -> int:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return len(body) * 3 // 4
    return len(body.encode("utf-8")) if not body.isascii() else len(body)


def _with_request_id(result: dict[str, Any], request_id: str) -> dict[str, Any]:
    if "multiValueHeaders" in result:
        result["multiValueHeaders"]["X-Request-Id"] = [request_id]
    else:
        result.setdefault("headers", {})["X-Request-Id"] = request_id
    return result


def _too_large(kind: str, limit: int, request_id: str) -> dict[str, Any]:
    """413 before any parsing: the body is never decoded."""
    err = ApiError(413, "payload_too_large", f"the request body exceeds {limit} bytes (API_MAX_BODY_BYTES)")
    logger.info("request rejected", extra={"status": 413, "code": err.code})
    result: dict[str, Any] = {
        "statusCode": 413,
        "body": _encode(_error_body(err, request_id)),
        "isBase64Encoded": False,
    }
    if kind == "rest":
        result["multiValueHeaders"] = {"Content-Type": [JSON]}
    else:
        result["headers"] = {"Content-Type": JSON}
    return _with_request_id(result, request_id)


def handle(event: dict[str, Any], context: Any, metrics: MetricsLike | None = None) -> dict[str, Any]:
    """Route one API event; every answer carries the request id (X-Request-Id header, and error bodies)."""
    started = time.perf_counter()
    kind = payload_kind(event)
    request_id = _request_id(event, context)
    limit = _max_body()
    if _body_size(event) > limit:
        result = _too_large(kind, limit, request_id)
    else:
        result = _with_request_id(resolver(kind).resolve(event, context), request_id)
    if metrics is not None:
        _emit(metrics, int(result["statusCode"]), time.perf_counter() - started)
    return result


def _emit(metrics: MetricsLike, status: int, seconds: float) -> None:
    from aws_lambda_powertools.metrics import MetricUnit

    metrics.add_metric(name=Metric.API_REQUESTS, unit=MetricUnit.Count, value=1)
    metrics.add_metric(name=Metric.API_LATENCY, unit=MetricUnit.Milliseconds, value=seconds * 1000)
    metrics.add_metric(name=Metric.API_CLIENT_ERRORS, unit=MetricUnit.Count, value=int(400 <= status < 500))
    metrics.add_metric(name=Metric.API_SERVER_ERRORS, unit=MetricUnit.Count, value=int(status >= 500))
