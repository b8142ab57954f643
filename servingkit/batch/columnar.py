"""Validate Arrow columns as a whole, so that clean Parquet rows never become Python dicts.

The row path (`lambda_fn.schema.validate`) turns every row into a dict and checks every value; on a
Parquet file whose column types already match the model's signature, that is most of the cost of a
chunk. Here each column is checked by its Arrow type and with vectorised masks (nulls, non-finite
numbers, integers out of range). Rows that pass go straight into the model's frame, built with the
same dtypes `validate` would use, so the predictions are identical. Rows that might fail are
*suspects*, not rejections: the caller sends them through the row path, which decides and words the
reason. A column whose type cannot be checked this way (dates, binary, floats for an integer field,
a missing column, extra columns in strict mode) gives no plan, and the whole chunk takes the row path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lambda_fn.schema import ColumnSpec, Signature

if TYPE_CHECKING:
    import pandas as pd

_DTYPES = {"double": np.float64, "float": np.float32, "long": np.int64, "integer": np.int32, "boolean": np.bool_}
_INT32 = (-(2**31), 2**31 - 1)
_INT64_MAX = 2**63 - 1


@dataclass(slots=True)
class ColumnarPlan:
    """`suspect[i]` is true for rows the row path must decide; the others are valid as they are."""

    suspect: np.ndarray
    signature: Signature

    @property
    def clean(self) -> bool:
        return not bool(self.suspect.any())

    def frame(self, batch: pa.RecordBatch | pa.Table) -> pd.DataFrame:
        """The model's input frame for the rows of `batch` (already without the suspects)."""
        import pandas as pd

        data: dict[str, Any] = {}
        for spec in self.signature.inputs:
            values = batch.column(spec.name).to_numpy(zero_copy_only=False)
            data[spec.name] = values.astype(_DTYPES.get(spec.type, object), copy=False)
        return pd.DataFrame(data, columns=self.signature.names)


def plan(batch: pa.RecordBatch | pa.Table, signature: Signature | None, *, strict: bool) -> ColumnarPlan | None:
    """Which rows are certainly valid, or None when the chunk must take the row path."""
    if signature is None:
        return None
    names = set(batch.schema.names)
    if strict and not names <= set(signature.names):
        return None
    suspect = np.zeros(batch.num_rows, dtype=bool)
    for spec in signature.inputs:
        if spec.name not in names:
            return None
        mask = _suspects(batch.column(spec.name), spec)
        if mask is None:
            return None
        if mask is not False:
            suspect |= mask
    return ColumnarPlan(suspect, signature)


def _suspects(column: pa.Array | pa.ChunkedArray, spec: ColumnSpec) -> np.ndarray | bool | None:
    """Rows of one column that may be invalid (False: none), or None when its type needs the row path."""
    t = column.type
    bad: Any = column.is_null() if column.null_count else None
    if spec.type == "double" and (pa.types.is_floating(t) or pa.types.is_integer(t)):
        if pa.types.is_floating(t):
            bad = _or(bad, pc.invert(pc.is_finite(column)))
    elif spec.type == "float" and pa.types.is_floating(t):
        bad = _or(bad, pc.invert(pc.is_finite(column)))
    elif spec.type in ("long", "integer") and pa.types.is_integer(t):
        low, high = _INT32 if spec.type == "integer" else (None, _INT64_MAX)
        bounds = pc.min_max(column)
        smallest, largest = bounds["min"].as_py(), bounds["max"].as_py()
        if (low is not None and smallest is not None and smallest < low) or (largest is not None and largest > high):
            return None  # out of range: rare, and the row path words the reason
    elif not _plain(spec.type, t):
        # Anything else needs a look at each value (integral floats are valid integers, dates are text
        # in rows, dictionary-encoded or nested columns): the row path decides.
        return None
    if bad is None:
        return False
    return np.asarray(pc.fill_null(bad, True).to_numpy(zero_copy_only=False), dtype=bool)


def _plain(kind: str, t: pa.DataType) -> bool:
    """Types whose only invalid value is null."""
    if kind == "string":
        return bool(pa.types.is_string(t) or pa.types.is_large_string(t))
    return kind == "boolean" and bool(pa.types.is_boolean(t))


def _or(a: Any, b: Any) -> Any:
    return b if a is None else pc.or_(a, b)
