"""A one-row predict that skips pandas, for the common scikit-learn shape (SINGLE_ROW_FAST_PATH).

On one row, a fitted `Pipeline([ColumnTransformer(TargetEncoder | "passthrough" | "drop"), estimator])` spends
almost all its time in the ColumnTransformer's pandas handling and checks (about 10 ms on the demo model)
and well under a millisecond in the trees. The fitted encoder is a table: category -> encoding, unknown ->
the target mean. So the row is encoded from that table into the float64 row the ColumnTransformer would
build, and the final estimator predicts on it: the same arithmetic, hence the same outputs to the last bit
(tests/unit/test_fast_path.py compares them on thousands of random rows, unknown categories included).

Any other shape, or a value the table does not cover exactly (a non-string category, a missing value),
takes the ordinary path: `compile_one_row` returns None, or the compiled call returns None for that row.
"""

from __future__ import annotations

import math
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
        if transformer == "passthrough" or (isinstance(transformer, FunctionTransformer) and transformer.func is None):
            # a fitted ColumnTransformer holds "passthrough" as an identity FunctionTransformer
            steps += [(c, None) for c in columns]
        elif isinstance(transformer, TargetEncoder) and getattr(transformer, "target_type_", None) == "continuous":
            default = float(transformer.target_mean_)
            for j, column in enumerate(columns):
                cats, codes = transformer.categories_[j], transformer.encodings_[j]
                if not all(isinstance(c, str) for c in cats):
                    return None  # a missing-value category: leave such models to the ordinary path
                steps.append((column, ({str(c): float(v) for c, v in zip(cats, codes, strict=True)}, default)))
        else:
            return None
    return steps


def compile_one_row(estimator: Any) -> OneRow | None:
    """The fast one-row call for `estimator`, or None when its shape is not the one this path reproduces."""
    try:
        from sklearn.compose import ColumnTransformer
        from sklearn.pipeline import Pipeline
    except ImportError:
        return None
    if not isinstance(estimator, Pipeline) or len(estimator.steps) != 2:
        return None
    columns, final = estimator.steps[0][1], estimator.steps[1][1]
    if not isinstance(columns, ColumnTransformer) or getattr(columns, "sparse_output_", True):
        return None
    if (getattr(columns, "_sklearn_output_config", None) or {}).get("transform") not in (None, "default"):
        return None
    if hasattr(final, "feature_names_in_") or not hasattr(final, "predict"):
        return None
    steps = _column_steps(columns.transformers_)
    if steps is None:
        return None
    import numpy as np

    width = len(steps)

    def one_row(frame: Any) -> Any:
        record = frame.iloc[0]
        x = np.empty((1, width), dtype=np.float64)
        for i, (column, encoder) in enumerate(steps):
            value = record[column]
            if encoder is None:
                if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
                    return None
                x[0, i] = value
                if math.isnan(x[0, i]):
                    return None
            else:
                if not isinstance(value, str):
                    return None
                table, default = encoder
                x[0, i] = table.get(value, default)
        return final.predict(x)

    return one_row
