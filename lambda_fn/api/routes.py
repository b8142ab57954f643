"""The routes: each parses its protocol, scores through `serving`, and answers with its wire model.

- `POST /predict`: raw objects like the stream's payloads (FEATURES_FIELD / ID_FIELD / FEATURE_HOOK);
- `POST /invocations`: MLflow's scoring protocol (JSON or CSV), the model's own columns, no hook; the same
  as `POST /endpoints/{name}/invocations` with `GET /api/2.0/endpoints[/{name}]`, what MLflow's
  deployments client (`mlflow.deployments.get_deploy_client("http://...")`) calls;
- `GET /v2`, `GET /v2/health/{live,ready}`, `GET /v2/models/{name}[/versions/{version}][/ready]`,
  `POST /v2/models/{name}[/versions/{version}]/infer`: the Open Inference Protocol (REST);
- `GET /health` (and `/ping`, as MLflow and SageMaker probe it), `GET /model`, `GET /openapi.json`.

`ROUTES` is the one table: the resolvers, the 405 check, the OpenAPI document and the CDK API
(`infra/api.py`) are built from it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver

from lambda_fn.api import serving
from lambda_fn.api.errors import CSV, JSON, ApiError, InputError, Problem, bad_input, json_response, logger
from lambda_fn.api.inputs import csv_rows, mlflow_json_rows, predict_payloads, v2_datatype, v2_request, v2_rows
from lambda_fn.api.openapi import WITH_BODY, Operation, as_text, document
from lambda_fn.api.request import body_text, json_body, json_text, request_id
from lambda_fn.api.schemas import (
    ENDPOINT_TYPE,
    KIT_NAME,
    KIT_VERSION,
    V2_DATATYPE,
    Health,
    InvocationsRequest,
    InvocationsResponse,
    MlflowEndpoint,
    MlflowEndpoints,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    V2InferRequest,
    V2InferResponse,
    V2Live,
    V2ModelMetadata,
    V2ModelReady,
    V2Ready,
    V2ServerMetadata,
)
from lambda_fn.config import Settings
from lambda_fn.model_store import LoadedModel
from lambda_fn.records import record_id

RouteFn = Callable[..., Response[str]]


ROUTES: list[tuple[str, str, RouteFn]] = []  # (method, rule, function)
OPERATIONS: dict[str, tuple[str, Operation]] = {}  # function name → (method, what the document says of it)


def _route(method: str, rule: str, doc: Operation) -> Callable[[RouteFn], RouteFn]:
    def register(fn: RouteFn) -> RouteFn:
        ROUTES.append((method, rule, fn))
        OPERATIONS[fn.__name__] = (method, doc)
        return fn

    return register


@_route("POST", "/predict", Operation(PredictResponse, WITH_BODY, {JSON: PredictRequest}))
def predict(app: ApiGatewayResolver) -> Response[str]:
    """Score raw payloads the way the stream does: one object, or `{"instances": [...]}`."""
    try:
        payloads = predict_payloads(json_body(app))
    except InputError as exc:
        raise bad_input(exc) from None
    settings = serving.settings()
    features_field, id_field = settings.features_field, settings.id_field
    problems: list[Problem] = []
    features: list[Any] = []
    ids: list[Any] = []
    for i, payload in enumerate(payloads):
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
    hook = serving.feature_hook()  # before the model: a bad FEATURE_HOOK is a misconfiguration, not a model fault
    model, identity = serving.routed_model(next((str(i) for i in ids if i is not None and i != ""), None))
    result = serving.score_result(features, model, hook)
    predictions = result.predictions
    serving.after_request(features, predictions, identity, ids, result, _request_id(app))
    out: dict[str, Any] = {"predictions": predictions}
    if id_field:
        out["ids"] = ids
    out["model"] = identity
    return json_response(PredictResponse, out)


_CSV_BODY = {"type": "string", "description": "CSV with a header line"}


_INVOCATIONS = Operation(InvocationsResponse, WITH_BODY, {JSON: InvocationsRequest, CSV: _CSV_BODY})


@_route("POST", "/invocations", _INVOCATIONS)
def invocations(app: ApiGatewayResolver) -> Response[str]:
    """MLflow's scoring protocol: what `mlflow models serve` accepts for this model, JSON or CSV."""
    return _invocations(app, None)


@_route("POST", "/endpoints/<name>/invocations", _INVOCATIONS)
def endpoint_invocations(app: ApiGatewayResolver, name: str) -> Response[str]:
    """MLflow's deployments client (`get_deploy_client(url).predict(endpoint=name, ...)`): /invocations by name."""
    return _invocations(app, name)


@_route("GET", "/api/2.0/endpoints", Operation(MlflowEndpoints))
def mlflow_endpoints(app: ApiGatewayResolver) -> Response[str]:
    """MLflow's deployments client `list_endpoints()`: the one endpoint, the served model."""
    return json_response(MlflowEndpoints, {"endpoints": [_endpoint(serving.model())]})


@_route("GET", "/api/2.0/endpoints/<name>", Operation(MlflowEndpoint))
def mlflow_endpoint(app: ApiGatewayResolver, name: str) -> Response[str]:
    """MLflow's deployments client `get_endpoint(name)` (404 unless `name` is the served model)."""
    model = serving.model()
    _check_name(name, model)
    return json_response(MlflowEndpoint, _endpoint(model))


def _endpoint(model: LoadedModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "endpoint_type": ENDPOINT_TYPE,
        "model": {"name": model.name, "provider": KIT_NAME},
        "endpoint_url": f"/endpoints/{model.name}/invocations",
        "limit": None,
    }


def _invocations(app: ApiGatewayResolver, name: str | None) -> Response[str]:
    text, media = body_text(app, (JSON, CSV))
    model = serving.model()
    if name is not None:
        _check_name(name, model)
    try:
        if media == CSV:
            rows = csv_rows(text, model.signature)
        else:
            rows, params = mlflow_json_rows(json_text(text), model.signature)
            if params:
                logger.warning("ignoring 'params': the model's predict takes none", extra={"params": sorted(params)})
    except InputError as exc:
        raise bad_input(exc) from None
    result = serving.score_result(rows, model)
    serving.captured(result, model.identity, _request_id(app), rows)
    return json_response(InvocationsResponse, {"predictions": result.predictions})


def _request_id(app: ApiGatewayResolver) -> str:
    return request_id(app.current_event.raw_event, app.lambda_context)


def _check_name(name: str, model: LoadedModel, version: str | None = None) -> None:
    """404 unless `name` (and `version`, on a versioned route) is what this endpoint serves."""
    if name != model.name:
        raise ApiError(404, "model_not_found", f"no model named {name!r}; this endpoint serves {model.name!r}")
    if version is not None and version != model.version:
        raise ApiError(
            404,
            "model_version_not_found",
            f"model {name!r} has no version {version!r} here; this endpoint serves version {model.version!r}",
        )


def _signature_output_type(model: LoadedModel) -> str:
    outputs = model.signature.outputs if model.signature else None
    if isinstance(outputs, list) and len(outputs) == 1 and isinstance(outputs[0], dict):
        spec = outputs[0]
        dtype = str((spec.get("tensor-spec") or {}).get("dtype") or spec.get("type") or "")
        return {"float64": "FP64", "float32": "FP32", "int64": "INT64", "int32": "INT32", "double": "FP64"}.get(
            dtype, V2_DATATYPE.get(dtype, "FP64")
        )
    return "FP64"


@_route("GET", "/v2", Operation(V2ServerMetadata))
def v2_server_metadata(app: ApiGatewayResolver) -> Response[str]:
    """Open Inference Protocol server metadata: the server's name, version and extensions (none)."""
    return json_response(V2ServerMetadata, {"name": KIT_NAME, "version": KIT_VERSION, "extensions": []})


@_route("GET", "/v2/models/<name>", Operation(V2ModelMetadata))
def v2_model_metadata(app: ApiGatewayResolver, name: str) -> Response[str]:
    """Open Inference Protocol model metadata."""
    return _v2_metadata(name, None)


@_route("GET", "/v2/models/<name>/versions/<version>", Operation(V2ModelMetadata))
def v2_model_version_metadata(app: ApiGatewayResolver, name: str, version: str) -> Response[str]:
    """Open Inference Protocol model metadata of one version (404 unless it is the version served)."""
    return _v2_metadata(name, version)


def _v2_metadata(name: str, version: str | None) -> Response[str]:
    model = serving.model()
    _check_name(name, model, version)
    inputs = []
    if model.signature is not None:
        inputs = [{"name": c.name, "datatype": V2_DATATYPE[c.type], "shape": [-1]} for c in model.signature.inputs]
    metadata = {
        "name": model.name,
        "versions": [model.version],
        "platform": f"servingkit-{model.format}",
        "inputs": inputs,
        "outputs": [{"name": "predict", "datatype": _signature_output_type(model), "shape": [-1]}],
    }
    return json_response(V2ModelMetadata, metadata)


@_route("GET", "/v2/models/<name>/ready", Operation(V2ModelReady))
def v2_model_ready(app: ApiGatewayResolver, name: str) -> Response[str]:
    """Open Inference Protocol model readiness."""
    return _v2_ready(name, None)


@_route("GET", "/v2/models/<name>/versions/<version>/ready", Operation(V2ModelReady))
def v2_model_version_ready(app: ApiGatewayResolver, name: str, version: str) -> Response[str]:
    """Open Inference Protocol readiness of one model version."""
    return _v2_ready(name, version)


def _v2_ready(name: str, version: str | None) -> Response[str]:
    model = serving.model()
    _check_name(name, model, version)
    return json_response(V2ModelReady, {"name": model.name, "ready": True})


_V2_INFER = Operation(V2InferResponse, WITH_BODY, {JSON: V2InferRequest})


@_route("POST", "/v2/models/<name>/infer", _V2_INFER)
def v2_infer(app: ApiGatewayResolver, name: str) -> Response[str]:
    """Open Inference Protocol inference: one column tensor per model input."""
    return _v2_infer(app, name, None)


@_route("POST", "/v2/models/<name>/versions/<version>/infer", _V2_INFER)
def v2_version_infer(app: ApiGatewayResolver, name: str, version: str) -> Response[str]:
    """Open Inference Protocol inference on one model version (404 unless it is the version served)."""
    return _v2_infer(app, name, version)


def _v2_infer(app: ApiGatewayResolver, name: str, version: str | None) -> Response[str]:
    body = json_body(app)
    model = serving.model()
    _check_name(name, model, version)
    try:
        request = v2_request(body)
        rows = v2_rows(request, model.signature)
    except InputError as exc:
        raise bad_input(exc) from None
    result = serving.score_result(rows, model)
    serving.captured(result, model.identity, _request_id(app), rows)
    predictions = result.predictions
    if predictions and all(isinstance(p, dict) for p in predictions):
        outputs = []
        for key in list(predictions[0]):
            col = [p.get(key) for p in predictions]
            outputs.append({"name": str(key), "datatype": v2_datatype(col), "shape": [len(col)], "data": col})
    else:
        outputs = [
            {"name": "predict", "datatype": v2_datatype(predictions), "shape": [len(predictions)], "data": predictions}
        ]
    out: dict[str, Any] = {"model_name": model.name, "model_version": model.version, "outputs": outputs}
    if request.id is not None:
        out["id"] = request.id
    return json_response(V2InferResponse, out)


@_route("GET", "/v2/health/live", Operation(V2Live, (404, 405)))
def v2_live(app: ApiGatewayResolver) -> Response[str]:
    """Open Inference Protocol liveness: the function answers."""
    return json_response(V2Live, {"live": True})


@_route("GET", "/v2/health/ready", Operation(V2Ready))
def v2_ready(app: ApiGatewayResolver) -> Response[str]:
    """Open Inference Protocol readiness: the model is loaded (loading it if needed)."""
    serving.model()
    return json_response(V2Ready, {"ready": True})


def _health() -> Response[str]:
    return json_response(Health, {"status": "ok", "model": serving.model().identity})


@_route("GET", "/health", Operation(Health))
def health(app: ApiGatewayResolver) -> Response[str]:
    """200 when the model is loaded (loading it on a cold container), 503 when it cannot be."""
    return _health()


@_route("GET", "/ping", Operation(Health))
def ping(app: ApiGatewayResolver) -> Response[str]:
    """Same as /health, under the path MLflow's scoring client and SageMaker probe."""
    return _health()


@_route("GET", "/model", Operation(ModelInfo))
def model_info(app: ApiGatewayResolver) -> Response[str]:
    """What is being served: identity, format, signature and when and how fast it loaded."""
    model = serving.model()
    settings = serving.settings()
    info = {
        **model.identity,
        "format": model.format,
        "signature": model.signature.to_dict() if model.signature else None,
        "loaded_at": datetime.fromtimestamp(model.loaded_at, UTC).isoformat(),
        "load_seconds": round(model.load_seconds, 4),
        "feature_hook": settings.feature_hook,
        "features_field": settings.features_field,
        "id_field": settings.id_field,
    }
    return json_response(ModelInfo, info)


@_route("GET", "/openapi.json", Operation(None, (404, 405)))
def openapi(app: ApiGatewayResolver) -> Response[str]:
    """This API's OpenAPI 3.1 document, with the served model's columns when it is loaded."""
    try:
        text = openapi_json(serving.model(), serving.settings())
    except ApiError:
        text = openapi_json()  # still useful while the model is unavailable
    return Response(status_code=200, content_type=JSON, body=text)


# --------------------------------------------------------------------------- binding and the document


_PATTERNS = [(method, re.compile("^" + re.sub(r"<\w+>", r"[^/]+", rule) + "/*$")) for method, rule, _ in ROUTES]


def allowed_methods(path: str) -> list[str]:
    """Methods that have a route for this path (empty: the path is unknown)."""
    return sorted({method for method, pattern in _PATTERNS if pattern.match(path)})


def _bind(app: ApiGatewayResolver, fn: RouteFn) -> RouteFn:
    def route(**params: str) -> Response[str]:
        return fn(app, **params)

    route.__name__ = fn.__name__
    route.__doc__ = fn.__doc__
    # Powertools reads path parameters (for the OpenAPI document) from the signature: drop `app`.
    sig = inspect.signature(fn)
    route.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])  # type: ignore[attr-defined]
    return route


def register(app: ApiGatewayResolver) -> ApiGatewayResolver:
    """Every route on `app`, with its summary (the docstring's first line) and operation id."""
    for method, rule, fn in ROUTES:
        summary = (fn.__doc__ or "").split("\n")[0]
        app.route(rule, method, summary=summary, operation_id=fn.__name__)(_bind(app, fn))
    return app


_BY_MODEL: dict[tuple[str, Settings | None], str] = {}


def openapi_json(model: LoadedModel | None = None, settings: Settings | None = None) -> str:
    """The document as JSON text, built once per model (and once without one)."""
    if model is None:
        return _generic()
    key = (model.sha256, settings)
    if key not in _BY_MODEL:
        _BY_MODEL[key] = as_text(_document(model, settings))
    return _BY_MODEL[key]


@lru_cache(maxsize=1)
def _generic() -> str:
    return as_text(_document())


def _document(model: LoadedModel | None = None, settings: Settings | None = None) -> dict[str, Any]:
    return document(register(APIGatewayRestResolver()), OPERATIONS, model, settings)
