"""Column values → typed numpy arrays with their missing and type-mismatch masks (numpy only, no pandas import).

A batch arrives as a pandas DataFrame (anything with `.columns` and `frame[name]`) or a mapping of column name
to a sequence. Each column is read for one expected kind: `number`, `string` or `bool`. Missing means None,
NaN or pandas' NA; a present value of another type is a type mismatch (counted, never binned).
"""

from __future__ import annotations

import math
from collections.abc import Container, Iterable, Sequence
from typing import Any, Literal

import numpy as np

Kind = Literal["number", "string", "bool"]
KINDS: tuple[Kind, ...] = ("number", "string", "bool")
MAX_CATEGORY_CHARS = 200  # a category is cut to this many characters before it is matched, hashed or written
MAX_NAME_CHARS = 200  # an extra column's name as counted


def columns_of(frame: Any, skip: Container[str] = ()) -> dict[str, np.ndarray]:
    """The columns of a DataFrame or a mapping, as numpy arrays (pandas' own dtypes become numpy or object), but
    those named in `skip`."""
    names: Iterable[Any] = frame.columns if hasattr(frame, "columns") else frame.keys()
    out: dict[str, np.ndarray] = {}
    for name in names:
        if str(name) in skip:
            continue
        col = frame[name]
        arr = col.to_numpy() if hasattr(col, "to_numpy") else np.asarray(col)
        out[str(name)] = arr.reshape(-1) if arr.ndim != 1 else arr
    return out


def string_codes(column: Any) -> tuple[np.ndarray, Distinct] | None:
    """A pandas string column's factorization (codes, -1 where missing; its distinct values), None for anything
    else: a string feature is then binned once per distinct value, not per row. Duck-typed, so this module imports
    no pandas."""
    dtype = getattr(column, "dtype", None)
    if type(dtype).__name__ != "StringDtype" or not hasattr(column, "factorize"):
        return None
    values = getattr(column, "array", column)  # a Series' own array factorizes without building an Index
    codes, uniques = values.factorize()
    return np.asarray(codes), Distinct(uniques)


_ARROW_TEXT = {"string": np.int32, "utf8": np.int32, "large_string": np.int64, "large_utf8": np.int64}


class Distinct:
    """A string column's distinct values as pandas factorized them. Arrow-backed ones (pandas' default `str`) stay
    Arrow's buffers: `ascii_points` reads their code points from the UTF-8 bytes when every one is ASCII, and a
    value becomes a `str` only when read (`take`, `[i]`), so the 4,670 distinct routes of a 10,000-ride batch are
    hashed without a `str` apiece."""

    __slots__ = ("_arrow", "_objects", "_values")

    def __init__(self, values: Any) -> None:
        self._values = values
        self._objects: np.ndarray | None = None
        self._arrow: Any = None
        if getattr(getattr(values, "dtype", None), "storage", None) == "pyarrow":  # Arrow's own, not a conversion
            arrow = values.__arrow_array__()
            arrow = arrow.combine_chunks() if hasattr(arrow, "combine_chunks") else arrow
            if str(arrow.type) in _ARROW_TEXT and not arrow.null_count:
                self._arrow = arrow

    def __len__(self) -> int:
        return len(self._values)

    def __getitem__(self, i: int) -> Any:
        return self._arrow[i].as_py() if self._arrow is not None else self.objects()[i]

    def objects(self) -> np.ndarray:
        """Every distinct value as an object array of `str`."""
        if self._objects is None:
            self._objects = np.asarray(self._values, dtype=object)
        return self._objects

    def take(self, codes: np.ndarray) -> list[Any]:
        """The values of `codes` (none missing), as `Series.tolist` gives them."""
        if self._arrow is not None and self._objects is None:
            return list(self._arrow.take(codes).to_pylist())
        return list(self.objects()[codes].tolist())

    def ascii_points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(the values' bytes end to end, each value's start, its length), `code_points`' layout without the NULs,
        when they are Arrow text that is all ASCII (a byte is then a code point) with no NUL; else None."""
        arrow = self._arrow
        if arrow is None:
            return None
        _, offsets_buf, data_buf = arrow.buffers()
        offsets = np.frombuffer(offsets_buf, dtype=_ARROW_TEXT[str(arrow.type)])
        offsets = offsets[arrow.offset : arrow.offset + len(arrow) + 1]
        flat = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, dtype=np.uint8)
        flat = flat[int(offsets[0]) : int(offsets[-1])] if len(offsets) else flat[:0]
        if len(flat) and (flat.max() >= 0x80 or not flat.min()):
            return None
        starts = (offsets[:-1] - offsets[0]).astype(np.int64)
        return flat, starts, np.diff(offsets).astype(np.int64)


class Columns:
    """One batch's columns read once, for its profile and its capture both: each as a numpy array (`array`, as
    `columns_of` reads it, on first use), or, for the pandas string columns named in `strings`, factorized
    (`coded`, as `string_codes`); `take` gives the captured rows' values without a pandas `iloc`."""

    __slots__ = ("_arrays", "_frame", "_series", "coded", "names")

    def __init__(self, frame: Any, strings: Container[str] = ()) -> None:
        self._frame = frame
        self._arrays: dict[str, np.ndarray] = {}
        self._series: dict[str, Any] = {}  # each column as the frame gives it, read once (a pandas lookup each)
        self.coded: dict[str, tuple[np.ndarray, Distinct]] = {}
        self.names: dict[str, Any] = {}  # str(name) -> the frame's own column name
        is_frame = hasattr(frame, "columns")
        for name in frame.columns if is_frame else frame.keys():
            self.names[str(name)] = name
            if is_frame and str(name) in strings and (codes := string_codes(self.column(str(name)))) is not None:
                self.coded[str(name)] = codes

    def column(self, name: str) -> Any:
        """The column `name` as the frame (or mapping) holds it."""
        col = self._series.get(name)
        if col is None:
            col = self._series[name] = self._frame[self.names[name]]
        return col

    def array(self, name: str) -> np.ndarray:
        """The column `name` as a 1-D numpy array (pandas' own dtypes become numpy or object)."""
        arr = self._arrays.get(name)
        if arr is None:
            col = self.column(name)
            arr = col.to_numpy() if hasattr(col, "to_numpy") else np.asarray(col)
            arr = self._arrays[name] = arr.reshape(-1) if arr.ndim != 1 else arr
        return arr

    def arrays(self) -> dict[str, np.ndarray]:
        """Every column but the coded ones, as `columns_of` gives them."""
        return {name: self.array(name) for name in self.names if name not in self.coded}

    def take(self, rows: Sequence[int]) -> dict[str, list[Any]]:
        """The values of `rows` per column, as `frame.iloc[rows][name].tolist()` gives them: read from the codes
        of a coded column, from the numpy values of a numpy-typed one, else taken by pandas."""
        idx = np.asarray(rows, dtype=np.intp)
        out: dict[str, list[Any]] = {}
        for name in self.names:
            if name in self.coded:
                codes, uniques = self.coded[name]
                picked = codes[idx]
                if not len(picked) or picked.min() >= 0:  # a missing value (-1) reads as pandas writes it
                    out[name] = uniques.take(picked)
                    continue
            col = self.column(name)
            dtype = getattr(col, "dtype", None)
            if isinstance(dtype, np.dtype) and dtype.kind in "biufO":
                out[name] = self.array(name)[idx].tolist()  # what Series.tolist gives: numpy's own tolist
            elif hasattr(col, "iloc"):
                out[name] = col.iloc[idx].tolist()
            else:
                out[name] = [col[i] for i in idx.tolist()]
        return out


def code_points(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(every text's code points end to end as uint32, each followed by a NUL; each text's start; its length) from
    one join and one UTF-32 encode, without a numpy 'U' array (10,000 ids: 0.2 ms instead of 2): what the
    vectorized hashes walk position by position. None when a text is not a `str` or holds a NUL itself (numpy's
    strings drop trailing NULs, so those go through a 'U' array as before)."""
    try:
        text = "\0".join([*texts, ""])
        flat = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    except (TypeError, UnicodeEncodeError):
        return None
    if text.count("\0") != len(texts):
        return None
    ends = np.flatnonzero(flat == 0)
    starts = np.concatenate(([0], ends[:-1] + 1)) if len(ends) else ends
    return flat, starts, ends - starts


_FNV_PRIME = np.uint64(0x100000001B3)
_GATHER_CELLS = 1 << 18  # fnv1a gathers texts into one table up to this many characters (2 MiB of indices)


def fnv1a(flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray, seed: np.uint64) -> np.ndarray:
    """64-bit FNV-1a from `seed` over each text's code points (`code_points`' layout), one numpy step per
    character position across the batch: only a text's own characters, never the batch's widest text. Texts of
    one length laid out at one stride (ids such as `ride-000123`) are read as the columns of a 2-D view instead,
    without an index array per position (half the time); short texts of mixed lengths (a batch's distinct routes)
    are gathered into one n x longest table first (bounded: `_GATHER_CELLS`)."""
    h = np.full(len(starts), seed, dtype=np.uint64)
    if (table := _uniform(flat, starts, lengths)) is not None:
        for j in range(table.shape[1]):
            h ^= table[:, j]
            h *= _FNV_PRIME
        return h
    width = int(lengths.max()) if len(lengths) else 0
    if 0 < len(starts) * width <= _GATHER_CELLS:
        steps = np.arange(width)
        table = flat.take(starts[:, None] + steps, mode="clip")
        live = lengths[:, None] > steps
        full = int(lengths.min())
        for j in range(width):
            if j < full:
                h ^= table[:, j]
                h *= _FNV_PRIME
            else:
                np.copyto(h, (h ^ table[:, j]) * _FNV_PRIME, where=live[:, j])
        return h
    for j in range(width):
        column = flat.take(starts + j, mode="clip")
        live = lengths > j
        if live.all():
            h ^= column
            h *= _FNV_PRIME
        else:
            np.copyto(h, (h ^ column) * _FNV_PRIME, where=live)
    return h


def _uniform(flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray | None:
    """The texts as the rows of a 2-D view of `flat` (n x length) when all have one length and text i starts at
    i * stride (as `code_points` lays out texts of one length), else None."""
    n = len(starts)
    if n < 2 or lengths.min() != lengths.max() or starts[0] != 0:
        return None
    stride = int(starts[1])
    if stride < int(lengths[0]) or len(flat) < n * stride or not np.array_equal(starts, np.arange(n) * stride):
        return None
    return flat[: n * stride].reshape(n, stride)[:, : int(lengths[0])]


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float | np.floating):
        return bool(v != v)
    # pandas.NA and NaT: neither equal to themselves nor usable in a boolean context.
    return type(v).__name__ in ("NAType", "NaTType")


def infer_kind(arr: np.ndarray) -> Kind:
    """The kind of a training column: bool and number dtypes as such, text as string, object by its values."""
    k = arr.dtype.kind
    if k == "b":
        return "bool"
    if k in "iuf":
        return "number"
    if k in "US":
        return "string"
    kinds = {"bool" if isinstance(v, bool | np.bool_) else "number" if _is_number(v) else "string"
             for v in arr if not _is_missing(v)}  # fmt: skip
    if len(kinds) == 1:
        return kinds.pop()  # type: ignore[return-value]
    return "string" if "string" in kinds or not kinds else "number"


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_)


def as_numbers(arr: np.ndarray, kind: Kind) -> tuple[np.ndarray, np.ndarray, int]:
    """(float64 values with NaN where not usable, missing mask, type-mismatch count) for a number or bool column."""
    k = arr.dtype.kind
    n = arr.shape[0]
    if (kind == "number" and k in "iufb") or (kind == "bool" and k == "b"):
        values = arr.astype(np.float64, copy=False)
        return values, np.isnan(values) if k == "f" else np.zeros(n, dtype=bool), 0
    if kind == "bool" and k in "iuf":
        values = arr.astype(np.float64, copy=False)
        missing = np.isnan(values)
        return np.full(n, np.nan), missing, int(n - missing.sum())
    if k != "O":
        return np.full(n, np.nan), np.zeros(n, dtype=bool), n
    if n and set(map(type, arr)) <= {int, float}:
        values = arr.astype(np.float64)
        return values, np.isnan(values), 0
    values = np.full(n, np.nan)
    missing = np.zeros(n, dtype=bool)
    mismatch = 0
    for i, v in enumerate(arr):
        if _is_missing(v):
            missing[i] = True
        elif isinstance(v, bool | np.bool_) or (kind == "number" and _is_number(v)):
            values[i] = float(v)
        else:
            mismatch += 1
    return values, missing, mismatch


def as_strings(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(the present strings, cut to MAX_CATEGORY_CHARS, as a 'U' array; missing mask; type-mismatch count)."""
    k = arr.dtype.kind
    n = arr.shape[0]
    if k == "U":
        return _cut(arr), np.zeros(n, dtype=bool), 0
    if k == "S":
        return _cut(np.char.decode(arr, "utf-8", "replace")), np.zeros(n, dtype=bool), 0
    if k == "f":
        missing = np.isnan(arr)
        return np.array([], dtype="U1"), missing, int(n - missing.sum())
    if k != "O":
        return np.array([], dtype="U1"), np.zeros(n, dtype=bool), n
    if set(map(type, arr)) <= {str}:  # the common case, without a Python step per value
        return _cut(arr.astype(str) if n else np.array([], dtype="U1")), np.zeros(n, dtype=bool), 0
    missing = np.zeros(n, dtype=bool)
    present: list[str] = []
    mismatch = 0
    for i, v in enumerate(arr):
        if isinstance(v, str):
            present.append(v)
        elif _is_missing(v):
            missing[i] = True
        else:
            mismatch += 1
    return _cut(np.array(present, dtype=str) if present else np.array([], dtype="U1")), missing, mismatch


def _cut(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.itemsize // 4 > MAX_CATEGORY_CHARS:
        return arr.astype(f"U{MAX_CATEGORY_CHARS}")
    return arr


def finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def cut_name(name: str) -> str:
    return name[:MAX_NAME_CHARS]
