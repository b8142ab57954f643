"""Request bodies of the serving protocols → rows (one dict per row, keyed by model column).

The wire formats are those of `mlflow models serve` (dataframe_split, dataframe_records, instances,
inputs; JSON or CSV), of the Open Inference Protocol (KServe v2 column tensors) and the stream's raw
payloads (/predict). A JSON body is validated by its request model in `lambda_fn.api.schemas` (its
envelope: keys, arrays, columns, tensor shapes and datatypes; a ValidationError becomes an `InputError`
in `errors.invalid_body`); the functions here turn the validated model into rows, checking only what
needs the model signature (column order, input names, datatypes that fit a column). Cell types are left
to `lambda_fn.schema.validate`, so every protocol reports the same messages.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from lambda_fn.api.errors import InputError, Problem, invalid_body
from lambda_fn.api.schemas import (
    MLFLOW_REQUESTS,
    V2_DATATYPE,
    V2_TYPES,
    DataframeSplit,
    InvocationsRequest,
    PredictRequest,
    SplitRequest,
    V2InferRequest,
    V2Tensor,
    check,
)
from lambda_fn.schema import Signature


def validated[M: BaseModel](model: type[M], body: Any, what: str, skip: int = 0) -> M:
    """`body` validated by its request model; InputError naming every field otherwise."""
    try:
        return check(model, body)
    except ValidationError as exc:
        raise invalid_body(exc, what, skip) from None


# --------------------------------------------------------------------------- /predict


def predict_payloads(body: Any) -> list[dict[str, Any]]:
    """A /predict body → its payloads: the body itself, or its `instances`."""
    request = validated(PredictRequest, body, 'the body must be a JSON object, or {"instances": [objects]}')
    return request.instances if request.instances is not None else [body]


# --------------------------------------------------------------------------- MLflow JSON


def _signature_names(signature: Signature | None, where: str, problem: str) -> list[str]:
    if signature is None:
        raise InputError(f"'{where}': {problem}", [Problem(problem, where)])
    return signature.names


def _positional(row: list[Any], names: Sequence[str], i: int, where: str) -> dict[str, Any]:
    if len(row) != len(names):
        raise InputError(
            f"{where}: row {i} has {len(row)} values for {len(names)} columns",
            [Problem(f"has {len(row)} values for {len(names)} columns {list(names)}", where, i)],
        )
    return dict(zip(names, row, strict=True))


def _transpose(columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """{"col": [v0, v1, ...], ...} of one length (the models check it) → records."""
    names = list(columns)
    n = len(columns[names[0]]) if names else 0
    return [{k: columns[k][i] for k in names} for i in range(n)]


def _columnar(columns: dict[str, Any]) -> list[Any]:
    # One row given as {"col": value, ...}: MLflow accepts scalars for a single record.
    if columns and not any(isinstance(v, list) for v in columns.values()):
        return [dict(columns)]
    return _transpose(columns)


def _records(value: list[Any] | dict[str, Any], signature: Signature | None, where: str) -> list[Any]:
    """Rows as objects, as arrays in signature order, or (an object) columns."""
    if isinstance(value, dict):
        return _columnar(value)
    if value and all(isinstance(r, list) for r in value):
        names = _signature_names(signature, where, "rows must be objects: the model declares no column names")
        return [_positional(r, names, i, where) for i, r in enumerate(value)]
    return list(value)


def _split(split: DataframeSplit, signature: Signature | None) -> list[Any]:
    columns = split.columns
    if columns is None:
        columns = _signature_names(signature, "dataframe_split.columns", "is required: the model declares no columns")
    # A single-column frame may be sent as a flat list of values.
    rows = (row if isinstance(row, list) else [row] for row in split.data)
    return [_positional(row, columns, i, "dataframe_split.data") for i, row in enumerate(rows)]


_FORMAT_OF = {model: key for key, model in MLFLOW_REQUESTS.items()}


def mlflow_json_rows(body: Any, signature: Signature | None) -> tuple[list[Any], dict[str, Any] | None]:
    """An MLflow scoring-server JSON body → rows, plus its `params` (reported, not used by sklearn)."""
    request = validated(InvocationsRequest, body, "invalid MLflow scoring request", skip=1).root
    if isinstance(request, SplitRequest):
        return _split(request.dataframe_split, signature), request.params
    key = _FORMAT_OF[type(request)]
    return _records(getattr(request, key), signature, key), request.params


# --------------------------------------------------------------------------- CSV


def _convert_cell(text: str, typ: str | None) -> Any:
    """CSV cells are text: convert to the signature's type (or infer a number, as pandas would)."""
    if typ in ("string", "datetime", "binary"):
        return text
    if typ in ("long", "integer"):
        return int(text)
    if typ in ("double", "float"):
        return float(text)
    if typ == "boolean":
        low = text.strip().lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
        raise ValueError(f"{text!r} is not true or false")
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text


def _csv_header(reader: Any, signature: Signature | None) -> list[str]:
    """The header line, stripped; a leading unnamed column (DataFrame.to_csv()'s index) is `__index__`."""
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InputError("the CSV body is empty; a header line is required", [Problem("empty body", None)]) from None
    if header and header[0] == "" and (signature is None or "" not in signature.names):
        header[0] = "__index__"  # DataFrame.to_csv() with its index: ignore that column
    if len(set(header)) != len(header):
        raise InputError("the CSV header has duplicate column names", [Problem("duplicate column names", None)])
    return header


def _csv_row(
    cells: list[str], header: list[str], types: dict[str, str], i: int, problems: list[Problem]
) -> dict[str, Any]:
    """One line's cells converted by column (empty cells are missing); what does not convert goes to `problems`."""
    if len(cells) != len(header):
        problems.append(Problem(f"has {len(cells)} cells for {len(header)} columns", None, i))
        return {}
    row: dict[str, Any] = {}
    for name, cell in zip(header, cells, strict=True):
        if name == "__index__" or cell == "":
            continue
        try:
            row[name] = _convert_cell(cell, types.get(name))
        except ValueError:
            problems.append(Problem(f"field '{name}' must be {types.get(name)}, got {cell[:40]!r}", name, i))
    return row


def csv_rows(text: str, signature: Signature | None) -> list[Any]:
    """A CSV with a header line (as `DataFrame.to_csv(index=False)` writes it) → rows.

    Empty cells are missing values; a cell that does not convert to its column's type is reported
    with its row and column, like a wrongly typed JSON value.
    """
    reader = csv.reader(io.StringIO(text))
    types = {c.name: c.type for c in signature.inputs} if signature else {}
    rows: list[Any] = []
    problems: list[Problem] = []
    try:
        header = _csv_header(reader, signature)
        for cells in reader:
            if cells:
                rows.append(_csv_row(cells, header, types, len(rows), problems))
    except csv.Error as exc:
        raise InputError(f"malformed CSV: {exc}", [Problem(str(exc), None)]) from None
    if problems:
        raise InputError("some CSV cells do not match the model signature", problems)
    return rows


# --------------------------------------------------------------------------- Open Inference Protocol


def v2_request(body: Any) -> V2InferRequest:
    return validated(V2InferRequest, body, "invalid inference request")


def _fits(tensor: V2Tensor, signature: Signature, types: dict[str, str]) -> Problem | None:
    """Why a valid tensor is not one of the model's inputs (unknown name, datatype for another type), or None."""
    name = tensor.name
    if name not in types:
        return Problem(f"unknown input '{name}'; the model takes {signature.names}", name)
    if tensor.datatype not in V2_TYPES[types[name]]:
        want = types[name]
        return Problem(
            f"datatype {tensor.datatype} does not fit the model's {want} column; use {V2_DATATYPE[want]}", name
        )
    return None


def _signature_problems(inputs: list[V2Tensor], signature: Signature) -> list[Problem]:
    types = {c.name: c.type for c in signature.inputs}
    problems = [p for p in (_fits(t, signature, types) for t in inputs) if p is not None]
    if not problems:
        given = {t.name for t in inputs}
        problems = [
            Problem(f"missing required input '{c.name}'", c.name)
            for c in signature.inputs
            if c.required and c.name not in given
        ]
    return problems


def v2_rows(request: V2InferRequest, signature: Signature | None) -> list[Any]:
    """A validated inference request → rows (the model has one output; `outputs` needs no choosing)."""
    if signature is not None:
        problems = _signature_problems(request.inputs, signature)
        if problems:
            raise InputError("the inference request does not match the model's inputs", problems)
    columns = {t.name: [v[0] if isinstance(v, list) and len(v) == 1 else v for v in t.data] for t in request.inputs}
    return _transpose(columns)


def v2_datatype(values: Sequence[Any]) -> str:
    """The Open Inference Protocol datatype of a list of plain Python values."""
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {bool} and kinds:
        return "BOOL"
    if kinds <= {int}:
        return "INT64"
    if kinds <= {int, float}:
        return "FP64"
    return "BYTES"
