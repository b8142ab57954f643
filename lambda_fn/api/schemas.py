"""The wire format of the API, written once: pydantic models of every request and response body.

Routes validate each answer against its model before it is sent (`errors.json_response`), the request
parsers take their protocol keys and datatypes from here (`lambda_fn.api.inputs`), and the OpenAPI
document (`lambda_fn.api.openapi`) is generated from these same classes. Nothing here imports the
rest of the API.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

Scalar = str | float | int | bool | None


class _Wire(BaseModel):
    # Validators are built when a model is first used, not at import: a cold start pays for the answers it gives.
    model_config = ConfigDict(defer_build=True)


# --------------------------------------------------------------------------- errors


class ErrorDetail(_Wire):
    row: int | None = Field(description="Index of the row at fault (0-based), null for the request as a whole")
    field: str | None = Field(description="The field, column or input at fault, when there is one")
    message: str


class ErrorInfo(_Wire):
    code: str = Field(description="Stable machine-readable code, e.g. invalid_input, malformed_json")
    message: str
    details: list[ErrorDetail]


class ErrorResponse(_Wire):
    error: ErrorInfo
    request_id: str = Field(description="API Gateway request id; also in the X-Request-Id header and the logs")


# --------------------------------------------------------------------------- POST /predict


class _Open(_Wire):
    model_config = ConfigDict(extra="allow", defer_build=True)


class ModelIdentity(_Wire):
    name: str
    version: str
    sha256: str


class PredictRequest(_Open):
    """One raw payload (as on the input stream), or a batch of them under "instances"."""

    instances: list[dict[str, Any]] | None = Field(default=None, min_length=1)


class PredictResponse(_Wire):
    predictions: list[Any] = Field(description="One per instance, in order")
    ids: list[Any] | None = Field(default=None, description="The ID_FIELD of each instance, when configured")
    model: ModelIdentity


# --------------------------------------------------------------------------- POST /invocations (MLflow)


class DataframeSplit(_Wire):
    columns: list[str] | None = None
    data: list[list[Scalar] | Scalar]
    index: list[Any] | None = None


class InvocationsRequest(_Open):
    """MLflow scoring protocol: exactly one of the four keys."""

    dataframe_split: DataframeSplit | None = None
    dataframe_records: list[dict[str, Scalar]] | None = None
    instances: list[Any] | dict[str, Any] | None = None
    inputs: list[Any] | dict[str, Any] | None = None
    params: dict[str, Any] | None = None


# The MLflow input formats: every key of InvocationsRequest but `params` (exactly one is required).
MLFLOW_FORMATS: tuple[str, ...] = tuple(k for k in InvocationsRequest.model_fields if k != "params")


class InvocationsResponse(_Wire):
    predictions: list[Any]


# --------------------------------------------------------------------------- Open Inference Protocol (/v2)

V2Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"
]
V2_DATATYPES: tuple[str, ...] = get_args(V2Datatype)
_INTS = ("INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16", "UINT8")
# Open Inference Protocol datatypes accepted for each signature column type (the first: what the model declares).
V2_TYPES: dict[str, tuple[str, ...]] = {
    "double": ("FP64", "FP32", "FP16", *_INTS),
    "float": ("FP32", "FP64", "FP16", *_INTS),
    "long": ("INT64", "INT32", "INT16", "INT8", "UINT32", "UINT16", "UINT8"),
    "integer": ("INT32", "INT16", "INT8", "UINT16", "UINT8"),
    "boolean": ("BOOL",),
    "string": ("BYTES",),
    "datetime": ("BYTES",),
    "binary": ("BYTES",),
}
V2_DATATYPE = {k: v[0] for k, v in V2_TYPES.items()}
assert {d for ds in V2_TYPES.values() for d in ds} <= set(V2_DATATYPES)


class V2Tensor(_Wire):
    name: str
    shape: list[int]
    datatype: V2Datatype
    data: list[Any]
    parameters: dict[str, Any] | None = None


class V2RequestOutput(_Wire):
    name: str
    parameters: dict[str, Any] | None = None


class V2InferRequest(_Wire):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[V2Tensor] = Field(min_length=1)
    outputs: list[V2RequestOutput] | None = None


class V2InferResponse(_Wire):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[V2Tensor]


class V2TensorMetadata(_Wire):
    name: str
    datatype: V2Datatype
    shape: list[int]


class V2ModelMetadata(_Wire):
    name: str
    versions: list[str]
    platform: str
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]


class V2ModelReady(_Wire):
    name: str
    ready: bool


class V2Live(_Wire):
    live: bool


class V2Ready(_Wire):
    ready: bool


# --------------------------------------------------------------------------- health and metadata


class Health(_Wire):
    status: Literal["ok"]
    model: ModelIdentity


class ColumnSpecDoc(_Wire):
    name: str
    type: str
    required: bool


class SignatureDoc(_Wire):
    inputs: list[ColumnSpecDoc]
    outputs: Any = None


class ModelInfo(_Wire):
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
