"""Score a batch: optional feature hook, validation, one predict call, failures isolated per row.

Shared by the stream scorer, the API and batch scoring so all apply the same rules. A row that can never
be scored (hook error on that row, schema violation, model error on that row) comes back with a reason.

Poison or broken deployment? When every row of a batch fails (in the hook or in the model), the rows
alone cannot tell. The deciding evidence is a *reference*: an input the model (or hook) is known to
handle, that is, the first row it scored in this container, the model's input example (`self_check`
at load), or a row built from its signature that it scores. On a whole-batch failure the reference is
scored once (a bounded probe, one row): if it still scores, the rows are poison and are dead-lettered;
if it fails, or if there is no reference at all yet, the model (or hook) is at fault and
`ModelBatchError` fails the batch so Lambda retries it, at any batch size. A broken model therefore never
turns traffic into dead letters, and a poison-only batch is dead-lettered as soon as the model has shown
it can score anything.
"""

from __future__ import annotations

import copy
import importlib
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from lambda_fn.config import ConfigError
from lambda_fn.hooks import FeatureError
from lambda_fn.records import Reason
from lambda_fn.schema import Signature, validate

Hook = Callable[[list[Any]], Any]


class Scorable(Protocol):
    """What scoring needs of a model (`model_store.LoadedModel` is one; the store imports this module)."""

    @property
    def signature(self) -> Signature | None: ...

    @property
    def feature_names(self) -> list[str] | None: ...

    def predict(self, frame: Any) -> list[Any]: ...


_DETAIL_CHARS = 1000
# One neutral value per column type: a row built from a signature, to probe a model with no reference yet.
_NEUTRAL: dict[str, Any] = {
    "double": 0.0,
    "float": 0.0,
    "long": 0,
    "integer": 0,
    "string": "",
    "boolean": False,
    "datetime": "1970-01-01T00:00:00+00:00",
    "binary": "",
}


class ModelBatchError(RuntimeError):
    """The model (or the feature hook) fails where it worked before, or every row fails and nothing shows it can
    work: a broken deployment or environment, not poison data."""


class HookBatchError(ModelBatchError):
    """The feature hook refused every object of a batch and nothing shows it works: `errors` says why, per object."""

    def __init__(self, message: str, errors: dict[int, RowError]) -> None:
        super().__init__(message)
        self.errors = errors


def describe(exc: BaseException) -> str:
    """`Type: message` of an exception from user code, bounded; never raises (a `__str__` may)."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - user code's __str__: anything goes
        text = "<unprintable>"
    return f"{type(exc).__name__}: {text}"[:_DETAIL_CHARS]


def hook_detail(exc: BaseException, features: Any = None) -> str:
    """Why the hook refused one object, naming fields, never values (the input may be sensitive). Bounded.

    `FeatureError`: each field and why. A `KeyError` on a name that is none of the object's string
    values: that field is missing (a lookup by one of its values would name the value: not reported).
    Anything else: only the exception's type, since its text may quote the input.
    """
    if isinstance(exc, FeatureError):
        return f"feature hook rejected: {exc}"[:_DETAIL_CHARS]
    key = exc.args[0] if isinstance(exc, KeyError) and len(exc.args) == 1 else None
    if isinstance(key, str) and 0 < len(key) <= _FIELD_CHARS and key not in _string_leaves(features):
        return f"feature hook failed: missing field '{key}'"
    return f"feature hook failed ({type(exc).__name__}); no field named"


_FIELD_CHARS = 128


def _string_leaves(value: Any, budget: int = 10_000) -> set[str]:
    """Every string value inside `value` (dicts and lists, bounded); keys are not values."""
    out: set[str] = set()
    stack = [value]
    while stack and budget > 0:
        budget -= 1
        item = stack.pop()
        if isinstance(item, str):
            out.add(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return out


class _References:
    """Per-object evidence (model or hook → an input it handled), kept for the few objects of a container.

    Keyed by identity with the object held, so an id cannot be reused while its entry lives.
    """

    def __init__(self, size: int = 16) -> None:
        self._items: dict[int, tuple[Any, Any]] = {}
        self._size = size
        self._lock = threading.Lock()  # the shadow scores on its own thread

    def get(self, owner: Any) -> Any:
        item = self._items.get(id(owner))
        return item[1] if item is not None and item[0] is owner else None

    def has(self, owner: Any) -> bool:
        return self.get(owner) is not None

    def put(self, owner: Any, value: Any) -> None:
        with self._lock:
            self._items.pop(id(owner), None)
            self._items[id(owner)] = (owner, value)
            while len(self._items) > self._size:
                self._items.pop(next(iter(self._items)))


_MODEL_REFERENCE = _References()
_HOOK_REFERENCE = _References()


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
    # The validated model input (after the hook) and the input row of each of its rows: what monitoring profiles.
    frame: Any = None
    kept: list[int] | None = None


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


def _copy(value: Any) -> Any:
    """A private copy of a feature object (a hook may change its input in place); None if it cannot be copied."""
    try:
        return copy.deepcopy(value)
    except Exception:  # noqa: BLE001 - any object a hook may have been given
        return None


def apply_hook(hook: Hook, features: list[Any]) -> tuple[list[Any], dict[int, RowError]]:
    """Run the hook on the whole batch; if it raises, run it row by row to find the culprits.

    When it fails on every row, its reference (the first feature object it accepted in this container)
    decides: accepted again, the rows are poison; refused, or never any accepted, the hook is at fault.
    """
    if not features:
        return [], {}
    learn = not _HOOK_REFERENCE.has(hook)
    first = _copy(features[0]) if learn else None  # copied before the call: a hook may change its input
    try:
        rows = _rows_of(hook(features), len(features))
    except Exception:  # noqa: BLE001 - user code: any failure is isolated to rows below
        pass
    else:
        if first is not None:
            _HOOK_REFERENCE.put(hook, first)
        return rows, {}
    rows = []
    errors: dict[int, RowError] = {}
    for i, feat in enumerate(features):
        candidate = _copy(feat) if learn else None
        try:
            rows.append(_rows_of(hook([feat]), 1)[0])
        except Exception as exc:  # noqa: BLE001 - user code
            rows.append(None)
            errors[i] = RowError(Reason.HOOK_ERROR, hook_detail(exc, feat))
        else:
            if candidate is not None:
                _HOOK_REFERENCE.put(hook, candidate)
                learn = False
    if len(errors) == len(features):
        _hook_still_works(hook, errors)
    return rows, errors


def _hook_still_works(hook: Hook, errors: dict[int, RowError]) -> None:
    """Raise HookBatchError unless the hook accepts its reference again (then the rows are poison)."""
    reference = _HOOK_REFERENCE.get(hook)
    sample = errors[0].detail
    if reference is None:
        raise HookBatchError(
            f"feature hook fails on every row ({sample}) and has accepted no row in this container yet; "
            "treating it as a deployment fault until it accepts one",
            errors,
        )
    try:
        _rows_of(hook([_copy(reference)]), 1)
    except Exception as exc:  # noqa: BLE001 - user code
        raise HookBatchError(
            f"feature hook fails on every row ({sample}) and on a row it accepted before ({hook_detail(exc)}); "
            "treating it as a deployment fault",
            errors,
        ) from None


def score_batch(
    features: Sequence[Any],
    model: Scorable,
    hook: Hook | None = None,
    *,
    strict: bool = False,
    finite: bool = False,
) -> BatchResult:
    """hook → validate → one predict; rows failing the model alone are found by bisection.

    `finite` makes a prediction holding NaN or ±inf a row error (`non_finite_prediction`): strict JSON
    cannot carry it (the stream and the API both ask for it).
    """
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
    return _predict_validated(model, checked.frame, kept, BatchResult(predictions, errors), finite)


def score_frame(
    frame: Any,
    model: Scorable,
    *,
    kept: list[int] | None = None,
    size: int | None = None,
    errors: dict[int, RowError] | None = None,
    finite: bool = False,
) -> BatchResult:
    """Score rows validated elsewhere (the batch engine checks Arrow columns as a whole).

    `frame` must be what `validate` builds for those rows; row i of it is input row `kept[i]` of a
    batch of `size` rows whose other rows failed with `errors`. The predict call, the bisection of
    failing rows and the broken-model rule are those of `score_batch`.
    """
    index = list(range(len(frame))) if kept is None else kept
    n = len(index) if size is None else size
    return _predict_validated(model, frame, index, BatchResult([None] * n, dict(errors or {})), finite)


def _predict_validated(
    model: Scorable, frame: Any, kept: list[int], result: BatchResult, finite: bool = False
) -> BatchResult:
    result.frame, result.kept = frame, kept
    if not kept:
        return result
    started = time.perf_counter()
    budget = [_bisect_budget(len(kept))]
    probed: list[bool | None] = []  # the reference probe, run at most once per batch
    _predict_into(model, frame, kept, result, budget, probed, finite)
    if finite:
        _reject_non_finite(result, kept)
    result.predict_seconds = time.perf_counter() - started
    result.scored = sum(1 for i in kept if i not in result.errors) if result.errors else len(kept)
    if result.scored == 0:
        sample = result.errors[kept[0]].detail
        verdict = probed[0] if probed else _probe(model, finite)
        if verdict is None:
            raise ModelBatchError(
                f"model fails on every row of the batch ({sample}) and has scored no row in this container yet "
                "(no input example, no row from its signature scores): treating it as a model fault until it does"
            )
        if not verdict:
            raise ModelBatchError(f"model fails on every row of the batch ({sample}) and on a row it scored before")
    elif not _MODEL_REFERENCE.has(model):
        _learn_reference(model, frame, kept, result)
    return result


def _learn_reference(model: Scorable, frame: Any, kept: list[int], result: BatchResult) -> None:
    """Keep the first row the model scored (to a finite value, whatever the caller's rule) as its reference."""
    for at, i in enumerate(kept):
        if i not in result.errors and not _non_finite(result.predictions[i]):
            _MODEL_REFERENCE.put(model, frame.iloc[[at]].copy())
            return


def remember_reference(model: Scorable, frame: Any) -> None:
    """Record rows `model` is known to score (its input example, checked at load) as its reference."""
    _MODEL_REFERENCE.put(model, frame.iloc[:1].copy())


def self_check(model: Scorable, example: Any = None) -> bool:
    """Load-time proof of life: score `example` (a frame) or, without one, a row built from the signature.

    An example that fails raises ModelBatchError (the model cannot score its own example: refuse it). A
    built row proves nothing when it fails (a strict encoder may refuse the neutral values): False, and
    the scorer then waits for the model's first scored row before it dead-letters rows for model errors.
    True when the model scored, and the row is its reference from then on.
    """
    if example is not None:
        try:
            out = model.predict(example)
            if len(out) != len(example):
                raise ValueError(f"model returned {len(out)} predictions for {len(example)} rows")
        except Exception as exc:  # noqa: BLE001 - model code
            raise ModelBatchError(f"model cannot score its own input example: {describe(exc)}") from None
        if len(out) and not _non_finite(out[0]):
            remember_reference(model, example)
        return True
    return _probe(model, finite=False) is True


def _neutral_row(model: Scorable) -> Any:
    """A one-row frame of neutral values from the model's signature (or feature names), or None."""
    signature = model.signature
    if signature is None and model.feature_names:
        signature = Signature.from_columns([{"name": n, "type": "double"} for n in model.feature_names])
    if signature is None:
        return None
    checked = validate([{c.name: _NEUTRAL[c.type] for c in signature.inputs}], signature)
    return checked.frame if checked.kept else None


def _probe(model: Scorable, finite: bool) -> bool | None:
    """Does the model still score its reference? None when there is none (a built row that fails is no evidence)."""
    reference = _MODEL_REFERENCE.get(model)
    built = reference is None
    if built:
        try:
            reference = _neutral_row(model)
        except Exception:  # noqa: BLE001 - a signature no neutral row satisfies: no evidence
            reference = None
        if reference is None:
            return None
    try:
        out = model.predict(reference)
        scored = len(out) == len(reference)
        clean = scored and not _non_finite(out[0])
    except Exception:  # noqa: BLE001 - model code
        scored = clean = False
    ok = clean if finite else scored
    if built:
        if clean:  # a reference must hold for every caller's rule, the stream's (finite) included
            _MODEL_REFERENCE.put(model, reference)
        return True if ok else None
    return ok


def _non_finite(value: Any) -> bool:
    """True when a prediction holds NaN or ±inf anywhere (lists and dicts walked without recursion)."""
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is float:
            if not math.isfinite(v):
                return True
        elif t is list or t is tuple:
            stack.extend(v)
        elif t is dict:
            stack.extend(v.values())
        elif isinstance(v, float) and not math.isfinite(v):  # numpy floating scalars
            return True
    return False


def _reject_non_finite(result: BatchResult, kept: list[int]) -> None:
    """Turn predictions strict JSON cannot carry into row errors; one `sum` decides the common all-finite case."""
    preds = result.predictions
    scored = kept if not result.errors else [i for i in kept if i not in result.errors]
    try:
        values = preds if len(scored) == len(preds) else [preds[i] for i in scored]
        if math.isfinite(sum(values)):  # any NaN or inf makes the sum NaN or inf
            return
    except (TypeError, OverflowError):  # not all numbers (labels, dicts), or an int beyond float range
        pass
    for i in scored:
        p = preds[i]
        if type(p) is not str and type(p) is not int and p is not None and _non_finite(p):
            preds[i] = None
            result.errors[i] = RowError(Reason.NON_FINITE_PREDICTION, "the model predicted NaN or Infinity")


def _bisect_budget(n: int) -> int:
    """Predict calls allowed to isolate bad rows: enough for a few poison rows, not for a broken model."""
    return 1 + 32 * max(1, n.bit_length())


def _predict_into(
    model: Scorable,
    frame: Any,
    index: list[int],
    result: BatchResult,
    budget: list[int],
    probed: list[bool | None],
    finite: bool,
) -> None:
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
            result.errors[index[0]] = RowError(Reason.MODEL_ERROR, f"model failed on this row: {describe(exc)}")
            return
        if not probed:  # the batch's first failure: one probe tells a broken model before any bisection
            probed.append(_probe(model, finite))
            if probed[0] is False:
                raise ModelBatchError(
                    f"model fails on every row: on this batch ({describe(exc)}) and on a row it scored before"
                ) from None
        mid = len(index) // 2
        _predict_into(model, frame.iloc[:mid], index[:mid], result, budget, probed, finite)
        _predict_into(model, frame.iloc[mid:], index[mid:], result, budget, probed, finite)
        return
    if len(index) == len(result.predictions):  # every row, in order (the usual case): no per-row copy
        result.predictions = list(out)
        return
    for i, value in zip(index, out, strict=True):
        result.predictions[i] = value
