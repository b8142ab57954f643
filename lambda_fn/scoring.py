"""Score a batch: optional feature hook, validation, one predict call, failures isolated per row.

Shared by the stream scorer and the API so both apply the same rules. A row that can never be scored
(hook error on that row, schema violation, model error on that row) comes back with a reason; a model
that fails on every row is a systemic fault and raises, so the batch is retried rather than dead-lettered.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lambda_fn.config import ConfigError
from lambda_fn.model_store import LoadedModel
from lambda_fn.records import Reason
from lambda_fn.schema import validate

Hook = Callable[[list[Any]], Any]
# A model failing on every one of at least this many rows is broken, not fed poison: the batch is
# retried instead of dead-lettered. Smaller all-failing batches are dead-lettered row by row (the
# model store's load-time self-check catches models that cannot score at all).
SYSTEMIC_MIN_ROWS = 8


class ModelBatchError(RuntimeError):
    """The model failed on every row: a broken model or environment, not poison data."""


@dataclass(slots=True)
class RowError:
    reason: str
    detail: str


@dataclass(slots=True)
class BatchResult:
    """Aligned with the input: predictions[i] is set exactly when i is not in errors."""

    predictions: list[Any]
    errors: dict[int, RowError]
    predict_seconds: float = 0.0
    predict_calls: int = 0
    scored: int = field(default=0)


def load_hook(spec: str | None) -> Hook | None:
    """Import `package.module:function`; errors name FEATURE_HOOK so the fix is obvious."""
    if not spec:
        return None
    module_name, _, func_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"FEATURE_HOOK={spec!r}: cannot import module {module_name!r}: {exc}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(f"FEATURE_HOOK={spec!r}: {module_name} has no function {func_name!r}")
    return func  # type: ignore[no-any-return]


def _rows_of(out: Any, expected: int) -> list[Any]:
    if hasattr(out, "to_dict") and hasattr(out, "columns"):
        out = out.to_dict(orient="records")
    rows = list(out)
    if len(rows) != expected:
        raise ValueError(f"feature hook returned {len(rows)} rows for {expected} inputs")
    return rows


def apply_hook(hook: Hook, features: list[Any]) -> tuple[list[Any], dict[int, RowError]]:
    """Run the hook on the whole batch; if it raises, run it row by row to find the culprits."""
    try:
        return _rows_of(hook(features), len(features)), {}
    except Exception:  # noqa: BLE001 - user code: any failure is isolated to rows below
        pass
    rows: list[Any] = []
    errors: dict[int, RowError] = {}
    for i, feat in enumerate(features):
        try:
            rows.append(_rows_of(hook([feat]), 1)[0])
        except Exception as exc:  # noqa: BLE001 - user code
            rows.append(None)
            errors[i] = RowError(Reason.HOOK_ERROR, f"feature hook failed: {type(exc).__name__}: {exc}")
    if errors and len(errors) == len(features) and len(features) >= SYSTEMIC_MIN_ROWS:
        first = errors[0].detail
        raise ModelBatchError(f"feature hook fails on every row ({first}); treating as a deployment fault")
    return rows, errors


def score_batch(
    features: Sequence[Any],
    model: LoadedModel,
    hook: Hook | None = None,
    *,
    strict: bool = False,
) -> BatchResult:
    """hook → validate → one predict; rows failing the model alone are found by bisection."""
    n = len(features)
    predictions: list[Any] = [None] * n
    errors: dict[int, RowError] = {}
    if n == 0:
        return BatchResult(predictions, errors)
    rows = list(features)
    if hook is not None:
        rows, errors = apply_hook(hook, rows)
    live = [i for i in range(n) if i not in errors]
    checked = validate([rows[i] for i in live], model.signature, strict=strict)
    for j, msg in checked.errors.items():
        errors[live[j]] = RowError(Reason.SCHEMA, msg)
    kept = [live[j] for j in checked.kept]
    return _predict_validated(model, checked.frame, kept, BatchResult(predictions, errors))


def score_frame(
    frame: Any,
    model: LoadedModel,
    *,
    kept: list[int] | None = None,
    size: int | None = None,
    errors: dict[int, RowError] | None = None,
) -> BatchResult:
    """Score rows validated elsewhere (the batch engine checks Arrow columns as a whole).

    `frame` must be what `validate` builds for those rows; row i of it is input row `kept[i]` of a
    batch of `size` rows whose other rows failed with `errors`. The predict call, the bisection of
    failing rows and the broken-model rule are those of `score_batch`.
    """
    index = list(range(len(frame))) if kept is None else kept
    n = len(index) if size is None else size
    return _predict_validated(model, frame, index, BatchResult([None] * n, dict(errors or {})))


def _predict_validated(model: LoadedModel, frame: Any, kept: list[int], result: BatchResult) -> BatchResult:
    if not kept:
        return result
    started = time.perf_counter()
    budget = [_bisect_budget(len(kept))]
    _predict_into(model, frame, kept, result, budget)
    result.predict_seconds = time.perf_counter() - started
    result.scored = sum(1 for i in kept if i not in result.errors) if result.errors else len(kept)
    if result.scored == 0 and len(kept) >= SYSTEMIC_MIN_ROWS:
        sample = result.errors[kept[0]].detail
        raise ModelBatchError(f"model fails on every row of the batch ({sample})")
    return result


def _bisect_budget(n: int) -> int:
    """Predict calls allowed to isolate bad rows: enough for a few poison rows, not for a broken model."""
    return 1 + 32 * max(1, n.bit_length())


def _predict_into(model: LoadedModel, frame: Any, index: list[int], result: BatchResult, budget: list[int]) -> None:
    if budget[0] <= 0:
        raise ModelBatchError(
            f"model errors on too many rows to isolate within {result.predict_calls} predict calls; "
            "treating the batch as failed so it is retried"
        )
    budget[0] -= 1
    result.predict_calls += 1
    try:
        out = model.predict(frame)
        if len(out) != len(index):
            raise ValueError(f"model returned {len(out)} predictions for {len(index)} rows")
    except Exception as exc:  # noqa: BLE001 - model code: isolate the failing rows
        if len(index) == 1:
            detail = f"model failed on this row: {type(exc).__name__}: {exc}"
            result.errors[index[0]] = RowError(Reason.MODEL_ERROR, detail)
            return
        mid = len(index) // 2
        _predict_into(model, frame.iloc[:mid], index[:mid], result, budget)
        _predict_into(model, frame.iloc[mid:], index[mid:], result, budget)
        return
    if len(index) == len(result.predictions):  # every row, in order (the usual case): no per-row copy
        result.predictions = list(out)
        return
    for i, value in zip(index, out, strict=True):
        result.predictions[i] = value
