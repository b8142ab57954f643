"""The wire format of the API, written once: pydantic models of every request and response body.

Request bodies are validated by these models (`lambda_fn.api.inputs` turns the validated model into
rows), answers are validated against them before they are sent (`errors.json_response`), and the OpenAPI
document (`lambda_fn.api.openapi`) is generated from these same classes. The models own the envelope of
a request (which keys, arrays or objects, column names, tensor names, shapes and datatypes); the cells of
the rows are left to the model signature (`lambda_fn.schema.validate`), so every protocol reports a bad
cell with the same row-and-field message. Nothing here imports the rest of the API.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    Strict,
    Tag,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError


class _Wire(BaseModel):
    # Validators are built when a model is first used, not at import: a cold start pays for the answers it gives.
    model_config = ConfigDict(defer_build=True)


def check[M: BaseModel](model: type[M], value: Any) -> M:
    """`value` validated by `model`: its validator called directly (what `model_validate` wraps, ~1 µs less
    a call), built on the model's first use, once. ValidationError when it does not conform."""
    return model.__pydantic_validator__.validate_python(value)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- errors


class ErrorDetail(_Wire):
    row: int | None = Field(description="Index of the row at fault (0-based), null for the request as a whole")
    field: str | None = Field(description="The field, column or input at fault, when there is one")
    message: str


class ErrorInfo(_Wire):
    code: str = Field(description="Stable machine-readable code, e.g. invalid_input, malformed_json")
    message: str
    details: list[ErrorDetail] = Field(description="Every problem, row by row, up to 100 (see details_total)")
    details_total: int | None = Field(
        default=None, description="How many problems there are, when there are more than the details list"
    )


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

    instances: list[dict[str, Any]] | None = Field(
        default=None, min_length=1, description="A batch of payloads; without it the body is one payload"
    )


class PredictResponse(_Wire):
    predictions: list[Any] = Field(description="One per instance, in order")
    ids: list[Any] | None = Field(default=None, description="The ID_FIELD of each instance, when configured")
    model: ModelIdentity


# --------------------------------------------------------------------------- POST /invocations (MLflow)


def _unique(names: list[str]) -> list[str]:
    if len(set(names)) != len(names):
        raise PydanticCustomError("duplicate_names", "has duplicate names")
    return names


def _rows_or_columns(value: Any) -> str | None:
    return "rows" if isinstance(value, list) else "columns" if isinstance(value, dict) else None


def _columns_agree(value: list[Any] | dict[str, Any]) -> list[Any] | dict[str, Any]:
    """Columns {"col": [v0, v1, ...]} all of one length, or one record {"col": value} (no arrays at all)."""
    if isinstance(value, dict):
        arrays = {k: len(v) for k, v in value.items() if isinstance(v, list)}
        if arrays and len(arrays) != len(value):
            scalar = next(k for k in value if k not in arrays)
            raise PydanticCustomError(
                "column_not_array", "column '{column}' must be an array like the others", {"column": scalar}
            )
        if len(set(arrays.values())) > 1:
            raise PydanticCustomError(
                "column_lengths", "columns must all have the same length; they have {lengths}", {"lengths": arrays}
            )
    return value


# Rows (objects by column, or arrays in signature order), or columns {"col": [values]}, or one record.
RowsOrColumns = Annotated[
    Annotated[list[Any], Tag("rows")] | Annotated[dict[str, Any], Tag("columns")],
    Discriminator(
        _rows_or_columns,
        custom_error_type="rows_or_columns",
        custom_error_message="must be an array of rows or an object of columns",
    ),
    AfterValidator(_columns_agree),
]


class _Mlflow(_Wire):
    # MLflow's scoring server ignores keys beside its format key and `params`; so does this one.
    model_config = ConfigDict(extra="ignore", defer_build=True)

    params: dict[str, Any] | None = Field(
        default=None, description="Logged and ignored: the model's predict takes none"
    )


class DataframeSplit(_Wire):
    """pandas' split orient (`DataFrame.to_dict(orient="split")`); other keys are ignored."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    columns: Annotated[list[str], AfterValidator(_unique)] | None = Field(
        default=None, json_schema_extra={"uniqueItems": True}, description="Default: the model signature's columns"
    )
    data: list[Any] = Field(description="Rows: arrays of cells in column order (one cell each for one column)")
    index: list[Any] | None = None


class SplitRequest(_Mlflow):
    dataframe_split: DataframeSplit


class RecordsRequest(_Mlflow):
    dataframe_records: list[Any] = Field(description="Rows: objects by column (or arrays in signature order)")


class InstancesRequest(_Mlflow):
    instances: RowsOrColumns


class InputsRequest(_Mlflow):
    inputs: RowsOrColumns


# The MLflow input formats, each a request model of its own (exactly one key is required).
MLFLOW_REQUESTS: dict[str, type[_Mlflow]] = {
    "dataframe_split": SplitRequest,
    "dataframe_records": RecordsRequest,
    "instances": InstancesRequest,
    "inputs": InputsRequest,
}
MLFLOW_FORMATS: tuple[str, ...] = tuple(MLFLOW_REQUESTS)


def _mlflow_format(body: Any) -> str | None:
    keys = [k for k in MLFLOW_FORMATS if k in body] if isinstance(body, dict) else []
    return keys[0] if len(keys) == 1 else None


class InvocationsRequest(
    RootModel[
        Annotated[
            Annotated[SplitRequest, Tag("dataframe_split")]
            | Annotated[RecordsRequest, Tag("dataframe_records")]
            | Annotated[InstancesRequest, Tag("instances")]
            | Annotated[InputsRequest, Tag("inputs")],
            Discriminator(
                _mlflow_format,
                custom_error_type="mlflow_format",
                custom_error_message=f"must be a JSON object with exactly one of {', '.join(MLFLOW_FORMATS)}",
            ),
        ]
    ]
):
    """MLflow scoring protocol: exactly one of the four keys (errors inside one start with its key)."""

    model_config = ConfigDict(defer_build=True)


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


def _column_shape(shape: list[int]) -> list[int]:
    if len(shape) == 2 and shape[1] != 1:
        raise PydanticCustomError("not_a_column", "must be [n] or [n, 1]: one column per tensor")
    return shape


ColumnShape = Annotated[
    list[Annotated[int, Strict(), Field(ge=0)]], Field(min_length=1, max_length=2), AfterValidator(_column_shape)
]


class V2Tensor(_Wire):
    """One column as a tensor (shape [n] or [n, 1], `data` flat or one-element rows): inputs and outputs."""

    name: Annotated[str, Strict()]
    shape: ColumnShape
    datatype: V2Datatype
    data: list[Any]
    parameters: dict[str, Any] | None = None

    @field_validator("data")
    @classmethod
    def _fits_shape(cls, data: list[Any], info: ValidationInfo) -> list[Any]:
        shape = info.data.get("shape")  # absent when the shape itself is invalid (reported on its own)
        if shape is not None and len(data) != shape[0]:
            raise PydanticCustomError(
                "data_shape", "has {n} values but 'shape' says {m}", {"n": len(data), "m": shape[0]}
            )
        return data


class V2RequestOutput(_Wire):
    name: str
    parameters: dict[str, Any] | None = None


class V2InferRequest(_Wire):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[V2Tensor] = Field(min_length=1, description="One column tensor per model input, all of one length")
    outputs: list[V2RequestOutput] | None = None

    @field_validator("inputs")
    @classmethod
    def _one_table(cls, inputs: list[V2Tensor]) -> list[V2Tensor]:
        seen: set[str] = set()
        for tensor in inputs:
            if tensor.name in seen:
                raise PydanticCustomError("duplicate_input", "input '{name}' is given twice", {"name": tensor.name})
            seen.add(tensor.name)
        lengths = {t.name: len(t.data) for t in inputs}
        if len(set(lengths.values())) > 1:
            raise PydanticCustomError(
                "input_lengths", "inputs must all have the same length; they have {lengths}", {"lengths": lengths}
            )
        return inputs


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


KIT_NAME = "servingkit"
KIT_VERSION = "0.1.0"
"""The kit's version (pyproject's, a test keeps them equal): the image ships the code, not the distribution."""


ENDPOINT_TYPE = "mlflow/pyfunc"
"""What `GET /api/2.0/endpoints/{name}` calls the endpoint (MLflow's client takes any string)."""


class MlflowEndpointModel(_Wire):
    name: str
    provider: str


class MlflowEndpoint(_Wire):
    """An endpoint as MLflow's deployments client reads it (`mlflow.deployments.server.config.Endpoint`)."""

    name: str
    endpoint_type: str
    model: MlflowEndpointModel
    endpoint_url: str
    limit: None = None


class MlflowEndpoints(_Wire):
    endpoints: list[MlflowEndpoint]


class V2ServerMetadata(_Wire):
    name: str
    version: str
    extensions: list[str]


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
