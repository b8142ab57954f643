"""A one-row predict that skips pandas, for the common scikit-learn shape (SINGLE_ROW_FAST_PATH).

On one row, a fitted `Pipeline([ColumnTransformer(TargetEncoder | "passthrough" | "drop"), estimator])` spends
almost all its time in the ColumnTransformer's pandas handling and checks (about 10 ms on the demo model)
and well under a millisecond in the trees. The fitted encoder is a table: category -> encoding, unknown ->
the target mean. So the row is encoded from that table into the float64 row the ColumnTransformer would
build, and the final estimator predicts on it: the same arithmetic, hence the same outputs to the last bit
(tests/unit/test_fast_path.py compares them on 1,000 random rows, unknown categories included;
`servingkit bench all` on 2,000 rows of the demo model).

Any other shape, or a value the table does not cover exactly (a non-string category, a missing value),
takes the ordinary path: `compile_one_row` returns None, or the compiled call returns None for that row.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

OneRow = Callable[[Any], Any]  # a one-row DataFrame -> the estimator's predict output, or None: use predict


def _column_steps(transformers: Sequence[Any]) -> list[tuple[str, Any]] | None:
    """(column, encoder) per output column, in the ColumnTransformer's output order: encoder is a
    (table, default) pair for a target-encoded column, None for a passthrough one."""
    from sklearn.preprocessing import FunctionTransformer, TargetEncoder

    steps: list[tuple[str, Any]] = []
    for _name, transformer, columns in transformers:
        if transformer == "drop":
            continue
        if not isinstance(columns, list | tuple) or not all(isinstance(c, str) for c in columns):
            return None
        # a fitted ColumnTransformer holds "passthrough" as an identity FunctionTransformer
        identity = transformer == "passthrough" or (
            isinstance(transformer, FunctionTransformer) and not transformer.func
        )
        encoded = isinstance(transformer, TargetEncoder) and getattr(transformer, "target_type_", None) == "continuous"
        tables = [None] * len(columns) if identity else _tables(transformer) if encoded else None
        if tables is None:
            return None
        steps += list(zip(columns, tables, strict=True))
    return steps


def _tables(encoder: Any) -> list[tuple[dict[str, float], float]] | None:
    """Per column of a fitted continuous TargetEncoder: (category -> encoding, the unknown's encoding)."""
    default = float(encoder.target_mean_)
    tables = []
    for cats, codes in zip(encoder.categories_, encoder.encodings_, strict=True):
        if not all(isinstance(c, str) for c in cats):
            return None  # a missing-value category: leave such models to the ordinary path
        tables.append(({str(c): float(v) for c, v in zip(cats, codes, strict=True)}, default))
    return tables


def _shape(estimator: Any) -> tuple[Any, Any] | None:
    """(ColumnTransformer, final estimator) of a two-step Pipeline this path reproduces, else None."""
    try:
        from sklearn.compose import ColumnTransformer
        from sklearn.pipeline import Pipeline
    except ImportError:
        return None
    if not isinstance(estimator, Pipeline) or len(estimator.steps) != 2:
        return None
    columns, final = estimator.steps[0][1], estimator.steps[1][1]
    dense = isinstance(columns, ColumnTransformer) and not getattr(columns, "sparse_output_", True)
    as_arrays = (getattr(columns, "_sklearn_output_config", None) or {}).get("transform") in (None, "default")
    if not (dense and as_arrays) or hasattr(final, "feature_names_in_") or not hasattr(final, "predict"):
        return None
    return columns, final


def compile_one_row(estimator: Any) -> OneRow | None:
    """The fast one-row call for `estimator`, or None when its shape is not the one this path reproduces."""
    shape = _shape(estimator)
    steps = _column_steps(shape[0].transformers_) if shape is not None else None
    if shape is None or steps is None:
        return None
    final = shape[1]
    import numpy as np

    width = len(steps)

    def one_row(frame: Any) -> Any:
        record = frame.iloc[0]
        x = np.empty((1, width), dtype=np.float64)
        for i, (column, encoder) in enumerate(steps):
            value = _encoded(record[column], encoder)
            if value is None:
                return None
            x[0, i] = value
        return final.predict(x)

    return one_row


def _encoded(value: Any, encoder: tuple[dict[str, float], float] | None) -> float | None:
    """The float the ColumnTransformer would put in this column, or None when this path cannot be sure."""
    if encoder is not None:
        return encoder[0].get(value, encoder[1]) if isinstance(value, str) else None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy's ints and floats are Real
        return None
    number = float(value)
    return None if math.isnan(number) else number
