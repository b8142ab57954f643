"""Input schemas: parse an MLflow signature (or a declared schema) and validate a batch column by column.

Validation is per column over the whole batch, not per record, so that a 10,000-row batch costs a
few list comprehensions. Each rejected row gets a message naming the field and what is wrong with it
(its JSON type, never its value: it may be sensitive, and it is in the record for whoever may read it);
the caller names the row.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

NUMERIC = frozenset({"double", "float", "long", "integer"})
KNOWN_TYPES = NUMERIC | {"string", "boolean", "datetime", "binary"}
_INT32 = 2**31
_INT64 = 2**63
_FLOAT32_MAX = 3.4028234663852886e38
_MISSING = object()


class SchemaError(ValueError):
    """The declared schema itself is malformed (a configuration error, not a bad record)."""


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    name: str
    type: str
    required: bool = True


@dataclass(frozen=True, slots=True)
class Signature:
    """Column-based inputs of a model; `outputs` is kept as MLflow wrote it, for documentation."""

    inputs: tuple[ColumnSpec, ...]
    outputs: Any = None

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.inputs]

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [{"name": c.name, "type": c.type, "required": c.required} for c in self.inputs],
            "outputs": self.outputs,
        }

    @classmethod
    def from_columns(cls, columns: Any, outputs: Any = None) -> Signature | None:
        """Accept MLflow's column list (a JSON string or a list); tensor signatures give None."""
        if isinstance(columns, str):
            try:
                columns = json.loads(columns)
            except json.JSONDecodeError as exc:
                raise SchemaError(f"schema is not valid JSON: {exc}") from None
        if isinstance(columns, dict) and "inputs" in columns:
            return cls.from_columns(columns["inputs"], columns.get("outputs", outputs))
        if not isinstance(columns, list) or not columns:
            raise SchemaError("schema must be a non-empty list of {name, type[, required]} objects")
        specs = []
        for i, col in enumerate(columns):
            if not isinstance(col, dict):
                raise SchemaError(f"schema column {i} must be an object")
            if col.get("type") == "tensor":
                return None
            name, typ = col.get("name"), col.get("type")
            if not isinstance(name, str) or not name:
                raise SchemaError(f"schema column {i} has no name")
            if typ not in KNOWN_TYPES:
                raise SchemaError(f"schema column {name!r} has unsupported type {typ!r}; one of {sorted(KNOWN_TYPES)}")
            specs.append(ColumnSpec(name=name, type=str(typ), required=bool(col.get("required", True))))
        return cls(inputs=tuple(specs), outputs=outputs)

    @classmethod
    def from_mlmodel(cls, mlmodel: dict[str, Any]) -> Signature | None:
        sig = mlmodel.get("signature") or {}
        if not sig.get("inputs"):
            return None
        outputs = sig.get("outputs")
        if isinstance(outputs, str):
            with contextlib.suppress(json.JSONDecodeError):
                outputs = json.loads(outputs)
        return cls.from_columns(sig["inputs"], outputs)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


def _is_double(v: Any) -> bool:
    """A finite float, or an int that converts to one (JSON integers have no bound; float() overflows)."""
    if type(v) is float:
        return math.isfinite(v)
    if type(v) is int:
        try:
            float(v)
        except OverflowError:
            return False
        return True
    return False


def _is_float32(v: Any) -> bool:
    """A number that stays finite as float32 (numpy would turn 1e300 into inf without a word)."""
    return _is_double(v) and -_FLOAT32_MAX <= v <= _FLOAT32_MAX


def _is_long(v: Any) -> bool:
    if type(v) is int:
        return -_INT64 <= v < _INT64
    return type(v) is float and v.is_integer() and -_INT64 <= v < _INT64


def _is_int(v: Any) -> bool:
    if type(v) is int:
        return -_INT32 <= v < _INT32
    return type(v) is float and v.is_integer() and -_INT32 <= v < _INT32


def _is_datetime(v: Any) -> bool:
    if type(v) is not str:
        return False
    try:
        datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


_CHECKS: dict[str, Callable[[Any], bool]] = {
    "double": _is_double,
    "float": _is_float32,
    "long": _is_long,
    "integer": _is_int,
    "string": lambda v: type(v) is str,
    "boolean": lambda v: type(v) is bool,
    "datetime": _is_datetime,
    "binary": lambda v: type(v) is str,
}
_EXPECT = {
    "double": "a finite number",
    "float": "a finite number within float32 range",
    "long": "an integer (64-bit)",
    "integer": "an integer (32-bit)",
    "string": "a string",
    "boolean": "true or false",
    "datetime": "an ISO-8601 date-time string",
    "binary": "a base64 string",
}


_CLEAN_TYPES: dict[str, frozenset[type]] = {
    "double": frozenset({float, int}),
    "float": frozenset({float, int}),
    "long": frozenset({int}),
    "string": frozenset({str}),
    "boolean": frozenset({bool}),
}


def _column_is_clean(values: list[Any], typ: str) -> bool:
    """Fast path for the usual all-good column: one pass of C-level type checks, no per-value calls."""
    allowed = _CLEAN_TYPES.get(typ)
    if allowed is None or not set(map(type, values)) <= allowed:
        return False
    if typ in ("double", "float"):
        import numpy as np

        try:
            column = np.asarray(values, dtype=np.float64)
        except OverflowError:  # an int beyond float range: the per-value check names it
            return False
        if typ == "float":
            return bool((np.abs(column) <= _FLOAT32_MAX).all())  # False for NaN and inf as well
        return bool(np.isfinite(column).all())
    if typ == "long":
        return all(-_INT64 <= v < _INT64 for v in (min(values), max(values))) if values else True
    return True


@dataclass(slots=True)
class Validated:
    """Rows that passed, as one frame, plus the index of each in the input and why the others failed."""

    frame: pd.DataFrame
    kept: list[int]
    errors: dict[int, str]


def _add(errors: dict[int, list[str]], i: int, msg: str) -> None:
    errors.setdefault(i, []).append(msg)


def validate(rows: list[Any], signature: Signature | None, *, strict: bool = False) -> Validated:
    """Check every row against the signature and build the model's input frame from the good ones.

    `strict` rejects fields the signature does not know (the API wants that; a stream usually
    carries extra fields and ignores them).
    """
    errs: dict[int, list[str]] = {}
    dict_rows = _objects(rows, errs)
    if signature is None:
        frame, kept = _unsigned_frame(dict_rows, errs)
        return Validated(frame, kept, {i: "; ".join(m) for i, m in errs.items()})

    columns, clean = _check_columns(signature, dict_rows, errs)
    if strict:
        _unknown_fields(signature, dict_rows, errs)
    try:
        frame, kept = _frame(signature, columns, clean, len(rows), errs)
    except (ValueError, TypeError, OverflowError):
        # A value passed its check but not the conversion (say a date pandas cannot hold): find the rows
        # at fault value by value, so that a record can only ever fail itself, never the batch.
        _conversion_errors(signature, columns, len(rows), errs)
        frame, kept = _frame(signature, columns, set(), len(rows), errs)
    return Validated(frame, kept, {i: "; ".join(m) for i, m in errs.items()})


def _objects(rows: list[Any], errs: dict[int, list[str]]) -> list[dict[str, Any]]:
    """The rows as objects, aligned with the input: a row that is not one fails and stands as `{}`."""
    dict_rows: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        if type(row) is not dict:
            _add(errs, i, f"features must be a JSON object, got {_json_type(row)}")
            dict_rows.append({})
        else:
            dict_rows.append(row)
    return dict_rows


def _unsigned_frame(dict_rows: list[dict[str, Any]], errs: dict[int, list[str]]) -> tuple[pd.DataFrame, list[int]]:
    """Without a signature: the good rows as they are, as one frame (a row no frame can hold fails alone)."""
    kept = [i for i in range(len(dict_rows)) if i not in errs]
    try:
        return _records_frame([dict_rows[i] for i in kept]), kept
    except (ValueError, TypeError, OverflowError):  # one row no frame can hold: find it, as with a signature
        _unframeable_rows(dict_rows, kept, errs)
    kept = [i for i in kept if i not in errs]
    return _records_frame([dict_rows[i] for i in kept]), kept


def _records_frame(good: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame.from_records(good) if good else pd.DataFrame()


def _unframeable_rows(dict_rows: list[dict[str, Any]], kept: list[int], errs: dict[int, list[str]]) -> None:
    import pandas as pd

    for i in kept:
        try:
            pd.DataFrame.from_records([dict_rows[i]])
        except (ValueError, TypeError, OverflowError) as exc:
            _add(errs, i, f"features cannot be read into a frame ({type(exc).__name__})")


def _check_columns(
    signature: Signature, dict_rows: list[dict[str, Any]], errs: dict[int, list[str]]
) -> tuple[dict[str, list[Any]], set[str]]:
    """Each signature column's values (`_MISSING` where absent) and the names of the clean ones.

    A clean column passed the fast path (every value present and of an allowed type); the others are
    checked value by value, each rejected value recorded in `errs` against its row.
    """
    not_objects = set(errs)
    columns: dict[str, list[Any]] = {}
    clean: set[str] = set()
    for spec in signature.inputs:
        values = [r.get(spec.name, _MISSING) for r in dict_rows]
        columns[spec.name] = values
        if not not_objects and _column_is_clean(values, spec.type):
            clean.add(spec.name)
        else:
            _check_values(values, spec, not_objects, errs)
    return columns, clean


def _check_values(values: list[Any], spec: ColumnSpec, skip: set[int], errs: dict[int, list[str]]) -> None:
    """The slow path of one column: every value checked, except those of rows in `skip` (not objects)."""
    check = _CHECKS[spec.type]
    for i, v in enumerate(values):
        if i in skip:
            continue
        if v is _MISSING or v is None:
            if spec.required:
                _add(errs, i, f"missing required field '{spec.name}' ({spec.type})")
        elif not check(v):
            _add(errs, i, f"field '{spec.name}' must be {_EXPECT[spec.type]}, got {_json_type(v)}")


def _unknown_fields(signature: Signature, dict_rows: list[dict[str, Any]], errs: dict[int, list[str]]) -> None:
    known = set(signature.names)
    for i, r in enumerate(dict_rows):
        extra = r.keys() - known
        if extra:
            _add(errs, i, "unknown field(s) " + ", ".join(f"'{e}'" for e in sorted(extra)))


def _frame(
    signature: Signature, columns: dict[str, list[Any]], clean: set[str], n: int, errs: dict[int, list[str]]
) -> tuple[pd.DataFrame, list[int]]:
    import pandas as pd

    kept = [i for i in range(n) if i not in errs]
    data: dict[str, Any] = {}
    everything = len(kept) == n
    for spec in signature.inputs:
        col = columns[spec.name]
        if everything and spec.name in clean:
            # A clean column has every value present and of an allowed type: no copy, no None scan.
            data[spec.name] = _to_series(col, spec, has_none=False)
            continue
        vals = [None if col[i] is _MISSING else col[i] for i in kept]
        data[spec.name] = _to_series(vals, spec)
    return pd.DataFrame(data, columns=signature.names), kept


def _conversion_errors(signature: Signature, columns: dict[str, list[Any]], n: int, errs: dict[int, list[str]]) -> None:
    import pandas as pd

    for spec in signature.inputs:
        for i, v in enumerate(columns[spec.name]):
            if i in errs or v is _MISSING or v is None:
                continue
            try:  # as _frame builds it: pandas may store strings in Arrow, which refuses lone surrogates
                pd.DataFrame({spec.name: _to_series([v], spec, has_none=False)})
            except (ValueError, TypeError, OverflowError) as exc:
                _add(errs, i, f"field '{spec.name}' cannot be read as {spec.type} ({type(exc).__name__})")


def _to_series(vals: list[Any], spec: ColumnSpec, has_none: bool | None = None) -> Any:
    import numpy as np
    import pandas as pd

    if has_none is None:
        has_none = any(v is None for v in vals)
    if spec.type in ("double", "float"):
        dtype = np.float64 if spec.type == "double" else np.float32
        return np.array([np.nan if v is None else v for v in vals], dtype=dtype) if has_none else np.array(vals, dtype)
    if spec.type in ("long", "integer"):
        if has_none:
            return np.array([np.nan if v is None else v for v in vals], dtype=np.float64)
        return np.array(vals, dtype=np.int64 if spec.type == "long" else np.int32)
    if spec.type == "boolean":
        return np.array(vals, dtype=object if has_none else bool)
    if spec.type == "datetime":
        return pd.to_datetime(vals, utc=True, format="ISO8601")
    return np.array(vals, dtype=object)
