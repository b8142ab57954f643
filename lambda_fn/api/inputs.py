"""Request bodies of the serving protocols → rows (one dict per row, keyed by model column).

The wire formats are those of `mlflow models serve` (dataframe_split, dataframe_records, instances,
inputs; JSON or CSV) and of the Open Inference Protocol (KServe v2 column tensors), as
`lambda_fn.api.schemas` declares them. Parsing only reshapes them; type checks are left to
`lambda_fn.schema.validate`, so every protocol reports the same messages. Problems that belong to no
single row (wrong shape, unknown key) raise `InputError` with the field named.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from lambda_fn.api.errors import InputError, Problem
from lambda_fn.api.schemas import MLFLOW_FORMATS, V2_DATATYPE, V2_TYPES
from lambda_fn.schema import Signature


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, int | float) else type(value).__name__
    )


def _positional(row: Any, names: Sequence[str], i: int, where: str) -> dict[str, Any]:
    if len(row) != len(names):
        raise InputError(
            f"{where}: row {i} has {len(row)} values for {len(names)} columns",
            [Problem(f"has {len(row)} values for {len(names)} columns {list(names)}", where, i)],
        )
    return dict(zip(names, row, strict=True))


def _columnar(columns: dict[str, Any], where: str) -> list[Any]:
    """{"col": [v0, v1, ...], ...} → records; every column must have the same length."""
    lengths = {}
    for name, values in columns.items():
        if not isinstance(values, list):
            # One row given as {"col": value, ...}: MLflow accepts scalars for a single record.
            if all(not isinstance(v, list) for v in columns.values()):
                return [dict(columns)]
            raise InputError(
                f"{where}: column '{name}' must be an array", [Problem("must be an array of values", name)]
            )
        lengths[name] = len(values)
    if len(set(lengths.values())) > 1:
        raise InputError(
            f"{where}: columns have different lengths {lengths}",
            [Problem(f"has {n} values; columns must all have the same length", k) for k, n in lengths.items()],
        )
    n = next(iter(lengths.values()), 0)
    names = list(columns)
    return [{k: columns[k][i] for k in names} for i in range(n)]


def _records(value: Any, signature: Signature | None, where: str) -> list[Any]:
    if isinstance(value, dict):
        return _columnar(value, where)
    if not isinstance(value, list):
        raise InputError(
            f"'{where}' must be an array of rows, got {_type_name(value)}", [Problem("must be an array", where)]
        )
    if value and all(isinstance(r, list) for r in value):
        if signature is None:
            raise InputError(
                f"'{where}' holds arrays, but the model declares no column names; send objects",
                [Problem("rows must be objects: the model has no signature", where)],
            )
        return [_positional(r, signature.names, i, where) for i, r in enumerate(value)]
    return list(value)


def _split(value: Any, signature: Signature | None) -> list[Any]:
    where = "dataframe_split"
    if not isinstance(value, dict):
        raise InputError(f"'{where}' must be an object with columns and data", [Problem("must be an object", where)])
    data = value.get("data")
    if not isinstance(data, list):
        raise InputError(f"'{where}.data' must be an array of rows", [Problem("must be an array", f"{where}.data")])
    columns = value.get("columns")
    if columns is None:
        if signature is None:
            raise InputError(
                f"'{where}.columns' is required: the model declares no column names",
                [Problem("is required", f"{where}.columns")],
            )
        columns = signature.names
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise InputError(
            f"'{where}.columns' must be an array of strings", [Problem("must be strings", f"{where}.columns")]
        )
    if len(set(columns)) != len(columns):
        raise InputError(f"'{where}.columns' has duplicates", [Problem("has duplicate names", f"{where}.columns")])
    rows = []
    for i, row in enumerate(data):
        if not isinstance(row, list):
            # A single-column frame may be sent as a flat list of values.
            row = [row]
        rows.append(_positional(row, columns, i, f"{where}.data"))
    return rows


def mlflow_json_rows(body: Any, signature: Signature | None) -> tuple[list[Any], dict[str, Any] | None]:
    """An MLflow scoring-server JSON body → rows, plus its `params` (reported, not used by sklearn)."""
    if not isinstance(body, dict):
        raise InputError(
            f"the body must be a JSON object with exactly one of {list(MLFLOW_FORMATS)}, got {_type_name(body)}",
            [Problem("must be an object", None)],
        )
    keys = [k for k in MLFLOW_FORMATS if k in body]
    if len(keys) != 1:
        raise InputError(
            f"the body must have exactly one of {list(MLFLOW_FORMATS)}; it has {sorted(body)}",
            [Problem(f"exactly one of {list(MLFLOW_FORMATS)} is required", None)],
        )
    key = keys[0]
    params = body.get("params")
    if params is not None and not isinstance(params, dict):
        raise InputError("'params' must be an object", [Problem("must be an object", "params")])
    if key == "dataframe_split":
        return _split(body[key], signature), params
    if key == "dataframe_records" and not isinstance(body[key], list):
        raise InputError("'dataframe_records' must be an array of objects", [Problem("must be an array", key)])
    return _records(body[key], signature, key), params


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


def csv_rows(text: str, signature: Signature | None) -> list[Any]:
    """A CSV with a header line (as `DataFrame.to_csv(index=False)` writes it) → rows.

    Empty cells are missing values; a cell that does not convert to its column's type is reported
    with its row and column, like a wrongly typed JSON value.
    """
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise InputError("the CSV body is empty; a header line is required", [Problem("empty body", None)]) from None
    except csv.Error as exc:
        raise InputError(f"malformed CSV: {exc}", [Problem(str(exc), None)]) from None
    header = [h.strip() for h in header]
    if header and header[0] == "" and (signature is None or "" not in signature.names):
        header[0] = "__index__"  # DataFrame.to_csv() with its index: ignore that column
    if len(set(header)) != len(header):
        raise InputError("the CSV header has duplicate column names", [Problem("duplicate column names", None)])
    types = {c.name: c.type for c in signature.inputs} if signature else {}
    rows: list[Any] = []
    problems: list[Problem] = []
    try:
        for cells in reader:
            if not cells:
                continue
            if len(cells) != len(header):
                problems.append(Problem(f"has {len(cells)} cells for {len(header)} columns", None, len(rows)))
                rows.append({})
                continue
            row: dict[str, Any] = {}
            for name, cell in zip(header, cells, strict=True):
                if name == "__index__" or cell == "":
                    continue
                try:
                    row[name] = _convert_cell(cell, types.get(name))
                except ValueError:
                    problems.append(
                        Problem(f"field '{name}' must be {types.get(name)}, got {cell[:40]!r}", name, len(rows))
                    )
            rows.append(row)
    except csv.Error as exc:
        raise InputError(f"malformed CSV: {exc}", [Problem(str(exc), None)]) from None
    if problems:
        raise InputError("some CSV cells do not match the model signature", problems)
    return rows


def v2_rows(body: Any, signature: Signature | None) -> list[Any]:
    """An Open Inference Protocol request → rows (the model has one output; `outputs` needs no choosing)."""
    if not isinstance(body, dict):
        raise InputError("the body must be a JSON object with 'inputs'", [Problem("must be an object", None)])
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InputError(
            "'inputs' must be a non-empty array of tensors", [Problem("must be a non-empty array", "inputs")]
        )
    types = {c.name: c.type for c in signature.inputs} if signature else {}
    columns: dict[str, list[Any]] = {}
    problems: list[Problem] = []
    for j, tensor in enumerate(inputs):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            problems.append(Problem("must be an object with a string 'name'", f"inputs[{j}]"))
            continue
        name = tensor["name"]
        shape, datatype, data = tensor.get("shape"), tensor.get("datatype"), tensor.get("data")
        if name in columns:
            problems.append(Problem("is given twice", name))
            continue
        if signature is not None and name not in types:
            problems.append(Problem(f"unknown input '{name}'; the model takes {signature.names}", name))
            continue
        if not isinstance(shape, list) or not shape or not all(type(d) is int and d >= 0 for d in shape):
            problems.append(Problem("'shape' must be a non-empty array of non-negative integers", name))
            continue
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            problems.append(Problem(f"shape {shape} is not a column: use [n] or [n, 1]", name))
            continue
        if not isinstance(datatype, str):
            problems.append(Problem("'datatype' must be a string such as FP64, INT64, BOOL or BYTES", name))
            continue
        if name in types and datatype not in V2_TYPES[types[name]]:
            problems.append(
                Problem(
                    f"datatype {datatype} does not fit the model's {types[name]} column; "
                    f"use {V2_DATATYPE[types[name]]}",
                    name,
                )
            )
            continue
        if not isinstance(data, list):
            problems.append(Problem("'data' must be an array", name))
            continue
        flat = [v[0] if isinstance(v, list) and len(v) == 1 else v for v in data]
        if len(flat) != shape[0]:
            problems.append(Problem(f"'data' has {len(flat)} values but shape says {shape[0]}", name))
            continue
        columns[name] = flat
    if signature is not None and not problems:
        missing = [c.name for c in signature.inputs if c.required and c.name not in columns]
        problems.extend(Problem(f"missing required input '{m}'", m) for m in missing)
    if not problems and len({len(v) for v in columns.values()}) > 1:
        lengths = {k: len(v) for k, v in columns.items()}
        problems.append(Problem(f"inputs have different lengths {lengths}", "inputs"))
    if problems:
        raise InputError("the inference request does not match the model's inputs", problems)
    n = len(next(iter(columns.values())))
    names = list(columns)
    return [{k: columns[k][i] for k in names} for i in range(n)]


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
