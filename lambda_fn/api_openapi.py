"""The API's OpenAPI 3.1 document, generated from the routes and the pydantic models below.

Powertools' resolver produces the paths, operation ids, summaries and path parameters from the routes
in `lambda_fn.api`; the request and response bodies come from the models here. They only document the
wire format (the routes parse bodies themselves, against the model's signature), so this module is
imported when the document is asked for, never on the scoring path. `docs/openapi.json` is this
document; `python -m lambda_fn.api_openapi > docs/openapi.json` refreshes it and a test checks it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lambda_fn.api import API_TITLE, API_VERSION, CSV, JSON, ROUTES, build_resolver
from lambda_fn.config import Settings
from lambda_fn.model_store import LoadedModel
from lambda_fn.schema import Signature

Scalar = str | float | int | bool | None


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(BaseModel):
    row: int | None = Field(description="Index of the row at fault (0-based), null for the request as a whole")
    field: str | None = Field(description="The field, column or input at fault, when there is one")
    message: str


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. invalid_input, malformed_json")
    message: str
    details: list[ErrorDetail]


class ErrorResponse(BaseModel):
    error: ErrorInfo
    request_id: str = Field(description="API Gateway request id; also in the X-Request-Id header and the logs")


class ModelIdentity(BaseModel):
    name: str
    version: str
    sha256: str


class PredictRequest(_Doc):
    """One raw payload (as on the input stream), or a batch of them under "instances"."""

    instances: list[dict[str, Any]] | None = Field(default=None, min_length=1)


class PredictResponse(BaseModel):
    predictions: list[Any] = Field(description="One per instance, in order")
    ids: list[Any] | None = Field(default=None, description="The ID_FIELD of each instance, when configured")
    model: ModelIdentity


class DataframeSplit(BaseModel):
    columns: list[str] | None = None
    data: list[list[Scalar] | Scalar]
    index: list[Any] | None = None


class InvocationsRequest(_Doc):
    """MLflow scoring protocol: exactly one of the four keys."""

    dataframe_split: DataframeSplit | None = None
    dataframe_records: list[dict[str, Scalar]] | None = None
    instances: list[Any] | dict[str, Any] | None = None
    inputs: list[Any] | dict[str, Any] | None = None
    params: dict[str, Any] | None = None


class InvocationsResponse(BaseModel):
    predictions: list[Any]


V2Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"
]


class V2Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: V2Datatype
    data: list[Any]
    parameters: dict[str, Any] | None = None


class V2RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class V2InferRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[V2Tensor] = Field(min_length=1)
    outputs: list[V2RequestOutput] | None = None


class V2InferResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[V2Tensor]


class V2TensorMetadata(BaseModel):
    name: str
    datatype: V2Datatype
    shape: list[int]


class V2ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]


class V2ModelReady(BaseModel):
    name: str
    ready: bool


class V2Live(BaseModel):
    live: bool


class V2Ready(BaseModel):
    ready: bool


class Health(BaseModel):
    status: Literal["ok"]
    model: ModelIdentity


class ColumnSpecDoc(BaseModel):
    name: str
    type: str
    required: bool


class SignatureDoc(BaseModel):
    inputs: list[ColumnSpecDoc]
    outputs: Any = None


class ModelInfo(BaseModel):
    name: str
    version: str
    sha256: str
    format: str = Field(description="How the artifact was loaded, e.g. mlflow-sklearn-skops")
    signature: SignatureDoc | None
    loaded_at: str = Field(description="ISO-8601 time the model finished loading in this container")
    load_seconds: float
    feature_hook: str | None
    features_field: str | None
    id_field: str | None


_ERRORS = {
    400: "Invalid input: malformed JSON or CSV, or rows that do not match the model signature (row and field named)",
    404: "Unknown route, or a model name this endpoint does not serve",
    405: "Method not allowed on this path (see the Allow header)",
    413: "Body larger than API_MAX_BODY_BYTES",
    415: "Unsupported Content-Type or charset",
    422: "Valid rows the model cannot score (it raises, or predicts NaN or Infinity) while it scores its reference "
    "row: the rows are named, the model's error is in the logs",
    500: "The model fails on valid input and on its reference row too: a broken model or environment (details "
    "only in the logs, by request id)",
    503: "The model or the configuration cannot be loaded (details in the logs)",
}
_JSON_BODY = (400, 404, 405, 413, 415, 422, 500, 503)
_NO_BODY = (404, 405, 500, 503)

# operation id → (request body models by media type, 200 response model, error statuses)
_OPERATIONS: dict[str, tuple[dict[str, type[BaseModel] | dict[str, Any]], type[BaseModel] | None, tuple[int, ...]]] = {
    "predict": ({JSON: PredictRequest}, PredictResponse, _JSON_BODY),
    "invocations": (
        {JSON: InvocationsRequest, CSV: {"type": "string", "description": "CSV with a header line"}},
        InvocationsResponse,
        _JSON_BODY,
    ),
    "v2_infer": ({JSON: V2InferRequest}, V2InferResponse, _JSON_BODY),
    "v2_model_metadata": ({}, V2ModelMetadata, _NO_BODY),
    "v2_model_ready": ({}, V2ModelReady, _NO_BODY),
    "v2_live": ({}, V2Live, (404, 405)),
    "v2_ready": ({}, V2Ready, _NO_BODY),
    "health": ({}, Health, _NO_BODY),
    "ping": ({}, Health, _NO_BODY),
    "model_info": ({}, ModelInfo, _NO_BODY),
    "openapi": ({}, None, (404, 405)),
}


def _ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    doc = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in doc.pop("$defs", {}).items():
        schemas[name] = sub
    schemas[model.__name__] = doc
    return {"$ref": f"#/components/schemas/{model.__name__}"}


_COLUMN_SCHEMAS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "binary": {"type": "string", "contentEncoding": "base64"},
    "datetime": {"type": "string", "format": "date-time"},
    "double": {"type": "number"},
    "float": {"type": "number"},
    "long": {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
    "integer": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    "boolean": {"type": "boolean"},
}


def _row_schema(signature: Signature) -> dict[str, Any]:
    return {
        "title": "ModelRow",
        "description": "One row of the model's input columns (its MLflow signature)",
        "type": "object",
        "properties": {c.name: dict(_COLUMN_SCHEMAS[c.type]) for c in signature.inputs},
        "required": [c.name for c in signature.inputs if c.required],
        "additionalProperties": False,
    }


def _one_of_keys(options: dict[str, dict[str, Any]], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "oneOf": [
            {
                "type": "object",
                "properties": {key: schema, **(extra or {})},
                "required": [key],
                "additionalProperties": False,
            }
            for key, schema in options.items()
        ]
    }


def _specialise(doc: dict[str, Any], signature: Signature, settings: Settings | None) -> None:
    """Describe the served model's own columns, so clients and fuzzers see exactly what is accepted."""
    schemas = doc["components"]["schemas"]
    schemas["ModelRow"] = _row_schema(signature)
    row = {"$ref": "#/components/schemas/ModelRow"}
    rows = {"type": "array", "items": row, "minItems": 1}
    schemas["InvocationsRequest"] = {
        "title": "InvocationsRequest",
        "description": "MLflow scoring protocol for this model: exactly one of the four keys",
        **_one_of_keys(
            {
                "dataframe_records": rows,
                "instances": rows,
                "inputs": rows,
                "dataframe_split": {
                    "type": "object",
                    "properties": {
                        "columns": {"const": signature.names},
                        "data": {"type": "array", "minItems": 1, "items": {"type": "array"}},
                    },
                    "required": ["columns", "data"],
                },
            },
            {"params": {"type": "object"}},
        ),
    }
    if settings is not None and settings.feature_hook is None:
        payload: dict[str, Any] = row
        if settings.features_field:
            props: dict[str, Any] = {settings.features_field: row}
            if settings.id_field:
                props[settings.id_field] = {"type": ["string", "integer"]}
            payload = {"type": "object", "properties": props, "required": [settings.features_field]}
        schemas["PredictRequest"] = {
            "title": "PredictRequest",
            "description": "One payload, or a batch of them under instances",
            "oneOf": [
                payload,
                {
                    "type": "object",
                    "properties": {"instances": {"type": "array", "items": payload, "minItems": 1}},
                    "required": ["instances"],
                    "additionalProperties": False,
                },
            ],
        }


def document(model: LoadedModel | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Build the document: Powertools' paths, completed with the bodies and error answers.

    Without a model it is generic (the committed docs/openapi.json); with one, request bodies name the
    model's columns and types (what GET /openapi.json serves).
    """
    app = build_resolver("rest")
    doc: dict[str, Any] = json.loads(
        app.get_openapi_json_schema(
            title=API_TITLE,
            version=API_VERSION,
            description=(
                "Synchronous predictions from the served model. Errors share one body: ErrorResponse. "
                "A request with any invalid row is rejected whole (400), listing every row and field at fault; "
                "rows the model cannot score are 422; a 5xx is a fault on the service's side."
            ),
        )
    )
    schemas: dict[str, Any] = {}
    error_ref = _ref(ErrorResponse, schemas)
    rid_header = {"X-Request-Id": {"description": "The request id", "schema": {"type": "string"}}}
    methods = {fn.__name__: method.lower() for method, _, fn in ROUTES}
    for path_item in doc["paths"].values():
        for method, op in path_item.items():
            name = op["operationId"]
            if methods.get(name) != method:
                continue
            bodies, ok_model, errors = _OPERATIONS[name]
            if bodies:
                content = {}
                for media, body_model in bodies.items():
                    schema = body_model if isinstance(body_model, dict) else _ref(body_model, schemas)
                    content[media] = {"schema": schema}
                op["requestBody"] = {"required": True, "content": content}
            ok_schema: dict[str, Any] = _ref(ok_model, schemas) if ok_model else {"type": "object"}
            responses: dict[str, Any] = {
                "200": {"description": "OK", "headers": rid_header, "content": {JSON: {"schema": ok_schema}}}
            }
            for status in errors:
                responses[str(status)] = {
                    "description": _ERRORS[status],
                    "headers": rid_header,
                    "content": {JSON: {"schema": error_ref}},
                }
            op["responses"] = responses
    doc["components"] = {"schemas": {k: schemas[k] for k in sorted(schemas)}}
    if model is not None and model.signature is not None:
        _specialise(doc, model.signature, settings)
        doc["info"]["description"] += f" Served model: {model.name} version {model.version}."
    return doc


_BY_MODEL: dict[tuple[str, Settings | None], str] = {}


def openapi_json(model: LoadedModel | None = None, settings: Settings | None = None) -> str:
    """The document as JSON text, built once per model (and once without one)."""
    if model is None:
        return _generic()
    key = (model.sha256, settings)
    if key not in _BY_MODEL:
        _BY_MODEL[key] = json.dumps(document(model, settings), indent=2, sort_keys=True) + "\n"
    return _BY_MODEL[key]


@lru_cache(maxsize=1)
def _generic() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(openapi_json(), end="")
