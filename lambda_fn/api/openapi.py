"""The API's OpenAPI 3.1 document, derived from the routes and the wire models that validate them.

Powertools' resolver produces the paths, operation ids, summaries and path parameters from the routes;
each route's `Operation` names its request and response models (`lambda_fn.api.schemas`, the same
classes its answers are validated against) and its error statuses. This module imports no other part
of the API but the models: the resolver and the operations are handed in (`lambda_fn.api.app`).
`docs/openapi.json` is the generic document: `python -m lambda_fn.api > docs/openapi.json` refreshes it
and a test checks it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver
from pydantic import BaseModel

from lambda_fn.api.schemas import ErrorResponse
from lambda_fn.config import Settings
from lambda_fn.model_store import LoadedModel
from lambda_fn.schema import Signature

API_TITLE = "Model serving API"
API_VERSION = "1.0.0"
JSON = "application/json"
_DESCRIPTION = (
    "Synchronous predictions from the served model. Errors share one body: ErrorResponse. "
    "A request with any invalid row is rejected whole (400), listing every row and field at fault; "
    "rows the model cannot score are 422; a 5xx is a fault on the service's side."
)
ERRORS = {
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
WITH_BODY = (400, 404, 405, 413, 415, 422, 500, 503)
WITHOUT_BODY = (404, 405, 500, 503)


@dataclass(frozen=True)
class Operation:
    """What the document says of one route: request bodies by media type, the 200 model, error statuses."""

    ok: type[BaseModel] | None
    errors: tuple[int, ...] = WITHOUT_BODY
    bodies: Mapping[str, type[BaseModel] | dict[str, Any]] = field(default_factory=dict)


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


def document(
    app: ApiGatewayResolver,
    operations: Mapping[str, tuple[str, Operation]],
    model: LoadedModel | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Build the document: Powertools' paths of `app`, completed with each operation's bodies and errors.

    `operations` maps an operation id to (HTTP method, Operation). Without a model the document is
    generic (the committed docs/openapi.json); with one, request bodies name the model's columns and
    types (what GET /openapi.json serves).
    """
    doc: dict[str, Any] = json.loads(
        app.get_openapi_json_schema(title=API_TITLE, version=API_VERSION, description=_DESCRIPTION)
    )
    schemas: dict[str, Any] = {}
    error_ref = _ref(ErrorResponse, schemas)
    rid_header = {"X-Request-Id": {"description": "The request id", "schema": {"type": "string"}}}
    for path_item in doc["paths"].values():
        for method, op in path_item.items():
            name = op["operationId"]
            if name not in operations or operations[name][0].lower() != method:
                continue
            spec = operations[name][1]
            if spec.bodies:
                content = {}
                for media, body_model in spec.bodies.items():
                    schema = body_model if isinstance(body_model, dict) else _ref(body_model, schemas)
                    content[media] = {"schema": schema}
                op["requestBody"] = {"required": True, "content": content}
            ok_schema: dict[str, Any] = _ref(spec.ok, schemas) if spec.ok else {"type": "object"}
            responses: dict[str, Any] = {
                "200": {"description": "OK", "headers": rid_header, "content": {JSON: {"schema": ok_schema}}}
            }
            for status in spec.errors:
                responses[str(status)] = {
                    "description": ERRORS[status],
                    "headers": rid_header,
                    "content": {JSON: {"schema": error_ref}},
                }
            op["responses"] = responses
    doc["components"] = {"schemas": {k: schemas[k] for k in sorted(schemas)}}
    if model is not None and model.signature is not None:
        _specialise(doc, model.signature, settings)
        doc["info"]["description"] += f" Served model: {model.name} version {model.version}."
    return doc


def as_text(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
