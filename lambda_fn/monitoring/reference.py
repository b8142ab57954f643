"""The training reference of a release: per feature and for the prediction, type, missing share, range and bins.

Numbers: quantile edges (`bins` quantiles, duplicates dropped) between the training minimum and maximum, plus an
underflow bin (below the minimum) and an overflow bin (above the maximum): bin 0 is `x < min`, bin i is
`edges[i-1] <= x < edges[i]`, the last interior bin is closed at the maximum, the last bin is `x > max`.
Booleans: two bins (false, true) with the same under/overflow bins, which stay empty. Strings: the `top_k` most
frequent categories with at least `min_category_rows` training rows each (ties by category), then "other" (known
categories), then "unseen" (values training never saw). Every training category is kept in a Bloom filter so a
serving value can be told apart as unseen (false-positive rate ≤ 1e-3: an unseen value is missed that rarely).
The reference's unseen bin holds the training singletons, moved out of "other": the leave-one-out (Good-Turing)
estimate of how often traffic from the training distribution brings a value that training did not see, so a
high-cardinality feature (the demo's PU_DO) does not look drifted merely because its tail is long. The
`min_category_rows` floor keeps rare categories out of their own bins, where sampling noise and the winner's
curse of picking the top K from a sample would read as drift. Missing values are counted beside the bins.

The JSON (`"format": 1`) is strict (no NaN) and deterministic for the same input; `sha256` is the digest of its
canonical form (sorted keys, no spaces, ASCII), which the release manifest pins next to the model.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, cast

import numpy as np

from lambda_fn.monitoring.columns import (
    KINDS,
    MAX_CATEGORY_CHARS,
    Distinct,
    Kind,
    as_numbers,
    as_strings,
    code_points,
    columns_of,
    fnv1a,
    infer_kind,
)

FORMAT = 1
DEFAULT_BINS = 10
DEFAULT_TOP_K = 20
DEFAULT_MIN_CATEGORY_ROWS = 30
BLOOM_FPR = 1e-3
PREDICTION = "prediction"
_INT_SPAN = 4096  # an integer column of fewer distinct values than this is counted per value (`_small_ints`)

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


class ReferenceFormatError(ValueError):
    """A reference that cannot be built or read (bad JSON, unknown format, inconsistent bins)."""


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB93FE1A85EC3)
    out: np.ndarray = h ^ (h >> np.uint64(33))
    return out


def string_hash(values: np.ndarray) -> np.ndarray:
    """A stable 64-bit hash per string of a 'U' array (FNV-1a over code points, then murmur's finalizer).

    Vectorized over the rows: one numpy step per character position, the same in every process (unlike
    Python's `hash`). NUL padding of numpy's fixed-width strings is skipped, so the width does not matter.
    """
    arr = np.ascontiguousarray(values.astype(str, copy=False))
    n = arr.shape[0]
    width = arr.dtype.itemsize // 4
    h = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    if n == 0 or width == 0:
        return h
    codes = arr.view(np.uint32).reshape(n, width).astype(np.uint64)
    with np.errstate(over="ignore"):
        for j in range(width):
            c = codes[:, j]
            h = np.where(c != 0, (h ^ c) * _FNV_PRIME, h)
        return _fmix64(h)


def text_hash(
    texts: Sequence[str], points: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
) -> np.ndarray | None:
    """`string_hash` of each text cut to MAX_CATEGORY_CHARS (as `as_strings` cuts it), from its code points
    (`columns.code_points`, or `points` in that layout: no 'U' array); None when a text is not a `str` or holds a
    NUL, or when every text is empty (`string_hash` leaves those unfinalized): then through a 'U' array."""
    coded = points if points is not None else code_points(texts)
    if coded is None:
        return None
    flat, starts, lengths = coded
    lengths = np.minimum(lengths, MAX_CATEGORY_CHARS)
    width = int(lengths.max()) if len(lengths) else 0
    if len(lengths) and not width:
        return None
    return _fmix64(fnv1a(flat, starts, lengths, _FNV_OFFSET))


@dataclass(frozen=True)
class Bloom:
    """A Bloom filter of strings: `m` bits (a multiple of 8), `k` probes by double hashing of `string_hash`."""

    m: int
    k: int
    bits: bytes

    @classmethod
    def of(cls, values: np.ndarray, fpr: float = BLOOM_FPR) -> Bloom:
        n = max(1, len(values))
        m = max(64, math.ceil(-n * math.log(fpr) / math.log(2) ** 2 / 8) * 8)
        k = max(1, round(m / n * math.log(2)))
        bits = np.zeros(m // 8, dtype=np.uint8)
        idx = cls._probes(values, m, k).reshape(-1)
        np.bitwise_or.at(bits, idx >> 3, (np.uint8(1) << (idx & 7).astype(np.uint8)))
        return cls(m, k, bits.tobytes())

    @staticmethod
    def _probes(values: np.ndarray, m: int, k: int) -> np.ndarray:
        return Bloom._hash_probes(string_hash(values), m, k)

    @staticmethod
    def _hash_probes(h1: np.ndarray, m: int, k: int) -> np.ndarray:
        with np.errstate(over="ignore"):
            h2 = _fmix64(h1 ^ np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)
            i = np.arange(k, dtype=np.uint64)
            return ((h1[:, None] + i[None, :] * h2[:, None]) % np.uint64(m)).astype(np.int64)

    @cached_property
    def _array(self) -> np.ndarray:
        return np.frombuffer(self.bits, dtype=np.uint8)

    def contains(self, values: np.ndarray) -> np.ndarray:
        """A bool per value: True if it may be in the set, False if it certainly is not."""
        if len(values) == 0:
            return np.zeros(0, dtype=bool)
        return self.contains_hashes(string_hash(values))

    @cached_property
    def _table(self) -> np.ndarray:
        """One bool per bit (built once per reference): a probe is one gather, not a shift and a mask."""
        return np.unpackbits(self._array, bitorder="little").view(bool)

    def contains_hashes(self, hashes: np.ndarray) -> np.ndarray:
        """`contains` of values given as their `string_hash`: the `_hash_probes` bits, probe after probe (h1 + i * h2
        as one wrapping add per probe, so no n x k arrays)."""
        if len(hashes) == 0:
            return np.zeros(0, dtype=bool)
        m, table = np.uint64(self.m), self._table
        with np.errstate(over="ignore"):
            h2 = _fmix64(hashes ^ np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)
            probe = hashes.astype(np.uint64, copy=True)
            hit: np.ndarray = table[probe % m]
            for _ in range(self.k - 1):
                probe += h2
                hit &= table[probe % m]
        return hit

    def to_dict(self) -> dict[str, Any]:
        return {"m": self.m, "k": self.k, "bits": base64.b64encode(self.bits).decode()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Bloom:
        bits = base64.b64decode(d["bits"], validate=True)
        m, k = int(d["m"]), int(d["k"])
        if m <= 0 or m % 8 or len(bits) != m // 8 or k <= 0:
            raise ReferenceFormatError("bloom filter: m must be a positive multiple of 8 with m/8 bytes of bits, k > 0")
        return cls(m, k, bits)


@dataclass(frozen=True)
class Binned:
    """One batch's column against a feature's bins."""

    bins: np.ndarray  # int64 counts, len = FeatureReference.n_bins
    missing: int
    type_mismatch: int
    unseen: int  # strings only: present values not in the training vocabulary (also the last bin)


@dataclass(frozen=True)
class FeatureReference:
    name: str
    kind: Kind
    rows: int
    missing: int
    counts: tuple[int, ...]  # the training rows per bin (same layout as a profile's bins)
    edges: tuple[float, ...] = ()  # number: [min, inner quantile edges..., max]; bool: (0, 1, 1)
    categories: tuple[str, ...] = ()  # string: the top-K, most frequent first
    distinct: int = 0  # string: distinct training categories
    known: Bloom | None = None  # string: every training category
    type_mismatch: int = 0

    @property
    def min(self) -> float | None:
        return self.edges[0] if self.edges else None

    @property
    def max(self) -> float | None:
        return self.edges[-1] if self.edges else None

    @property
    def n_bins(self) -> int:
        if self.kind == "string":
            return len(self.categories) + 2
        return len(self.edges) + 1 if self.edges else 1

    @property
    def missing_share(self) -> float:
        return self.missing / self.rows if self.rows else 0.0

    def bin_labels(self) -> list[str]:
        """A short label per bin, for reports."""
        if self.kind == "string":
            return [*self.categories, "(other)", "(unseen)"]
        if not self.edges:
            return ["(all)"]
        if self.kind == "bool":
            return ["< false", "false", "true", "> true"]
        e = self.edges
        inner = [f"[{_g(e[i])}, {_g(e[i + 1])})" for i in range(len(e) - 2)]
        inner.append(f"[{_g(e[-2])}, {_g(e[-1])}]")
        return [f"< {_g(e[0])}", *inner, f"> {_g(e[-1])}"]

    @cached_property
    def _cuts(self) -> np.ndarray:
        cuts = np.array(self.edges, dtype=np.float64)
        if len(cuts):
            cuts[-1] = np.nextafter(cuts[-1], np.inf)
        return cuts

    @cached_property
    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        cats = np.array(self.categories, dtype=str) if self.categories else np.array([], dtype="U1")
        order = np.argsort(cats, kind="stable")
        return cats[order], order.astype(np.int64)

    def bin(self, column: np.ndarray) -> Binned:
        """Count one column into this feature's bins (vectorized: `searchsorted` then `bincount`)."""
        n_bins = self.n_bins
        if self.kind == "string":
            values, missing, mismatch = as_strings(column)
            bins = np.bincount(self._string_bins(values), minlength=n_bins).astype(np.int64)
            return Binned(bins, int(missing.sum()), mismatch, int(bins[-1]))
        if self.kind == "number" and (small := self._small_ints(column)) is not None:
            return Binned(small, 0, 0, 0)
        nums, missing, mismatch = as_numbers(column, self.kind)
        present = nums[~np.isnan(nums)]
        idx = np.searchsorted(self._cuts, present, side="right") if len(self._cuts) else np.zeros(len(present), int)
        bins = np.bincount(idx, minlength=n_bins)
        return Binned(bins.astype(np.int64), int(missing.sum()), mismatch, 0)

    def _small_ints(self, column: np.ndarray) -> np.ndarray | None:
        """The bins of an integer column spanning under `_INT_SPAN` values (an hour, a weekday): each value counted
        once (`bincount`), each distinct value binned once, the same counts as binning every row as a float."""
        if column.dtype.kind not in "iu" or len(column) < 64 or not len(self._cuts):
            return None
        lo, hi = int(column.min()), int(column.max())
        if hi - lo >= _INT_SPAN:
            return None
        wide = column if column.dtype.itemsize == 8 else column.astype(np.int64)  # no wrap below: lo <= v <= hi
        per_value = np.bincount((wide - wide.dtype.type(lo)).astype(np.intp, copy=False))
        where = np.searchsorted(self._cuts, np.arange(lo, hi + 1).astype(np.float64), side="right")
        return np.bincount(where, weights=per_value, minlength=self.n_bins).astype(np.int64)

    def bin_coded(self, codes: np.ndarray, uniques: np.ndarray | Distinct) -> Binned:
        """`bin` of a column of strings given as its factorization (`codes` into `uniques`, -1 for missing): each
        distinct value is matched and looked up in the Bloom filter once, however often it repeats (ASCII values
        kept by Arrow straight from their bytes, `Distinct.ascii_points`)."""
        if self.kind != "string":
            raise ValueError(f"feature {self.name!r} is not a string feature")
        by_value = None
        if isinstance(uniques, Distinct) and (points := uniques.ascii_points()) is not None:
            by_value = self._text_bins(uniques, points)
        if by_value is None:
            objects = uniques.objects() if isinstance(uniques, Distinct) else np.asarray(uniques, dtype=object)
            by_value = self._text_bins(objects.tolist())
            if by_value is None:  # a value holding a NUL, or not a string: through a 'U' array
                values, _, mismatch = as_strings(objects)
                if mismatch or len(values) != len(uniques):
                    raise ValueError("uniques of a string column must be strings")
                by_value = self._string_bins(values)
        codes = np.asarray(codes)
        present = codes[codes >= 0]
        bins = np.bincount(by_value[present], minlength=self.n_bins).astype(np.int64)
        return Binned(bins, int(len(codes) - len(present)), 0, int(bins[-1]))

    @cached_property
    def _category_hashes(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The top-K categories' `string_hash`es, sorted, and each one's bin; None if two share one (or a category
        holds a NUL): then strings are matched through 'U' arrays."""
        hashes = text_hash(list(self.categories))
        if hashes is None:
            return None
        order = np.argsort(hashes, kind="stable")
        ordered = hashes[order]
        return None if (ordered[1:] == ordered[:-1]).any() else (ordered, order.astype(np.int64))

    def _text_bins(
        self, texts: Sequence[str] | Distinct, points: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    ) -> np.ndarray | None:
        """`_string_bins` of texts without a 'U' array: each text's hash (from `points`, their code points, when
        given) matched against the top K's (then the text compared, so a collision cannot match) and looked up in
        the Bloom filter; None: use `_string_bins`."""
        categories = self._category_hashes
        hashes = text_hash(cast("Sequence[str]", texts), points) if categories is not None else None
        if categories is None or hashes is None:
            return None
        ordered, order = categories
        k = len(ordered)
        idx = np.full(len(texts), k, dtype=np.int64)
        if k:
            pos = np.minimum(np.searchsorted(ordered, hashes), k - 1)
            for i in np.flatnonzero(ordered[pos] == hashes).tolist():
                category = int(order[pos[i]])
                if texts[i][:MAX_CATEGORY_CHARS] == self.categories[category]:
                    idx[i] = category
        rest = np.flatnonzero(idx == k)
        if self.known is not None and len(rest):
            idx[rest[~self.known.contains_hashes(hashes[rest])]] = k + 1
        return idx

    def _string_bins(self, values: np.ndarray) -> np.ndarray:
        """Each string's bin: its top-K category's, else "other" if the Bloom filter may know it, else "unseen"."""
        cats, order = self._sorted
        k = len(cats)
        if k == 0:
            idx, rest = np.full(len(values), k, dtype=np.int64), np.arange(len(values))
        else:
            pos = np.minimum(np.searchsorted(cats, values), k - 1)
            hit = cats[pos] == values
            idx, rest = np.where(hit, order[pos], k), np.flatnonzero(~hit)
        if self.known is not None and len(rest):
            idx[rest[~self.known.contains(values[rest])]] = k + 1
        return idx

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "rows": self.rows,
            "missing": self.missing,
            "type_mismatch": self.type_mismatch,
            "counts": list(self.counts),
        }
        if self.kind == "string":
            d["categories"] = list(self.categories)
            d["distinct"] = self.distinct
            d["known"] = self.known.to_dict() if self.known else None
        else:
            d["edges"] = list(self.edges)
            d["min"], d["max"] = self.min, self.max
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureReference:
        try:
            kind = d["kind"]
            if kind not in KINDS:
                raise ReferenceFormatError(f"feature {d.get('name')!r}: unknown kind {kind!r}")
            f = cls(
                name=str(d["name"]),
                kind=kind,
                rows=int(d["rows"]),
                missing=int(d["missing"]),
                type_mismatch=int(d.get("type_mismatch", 0)),
                counts=tuple(int(c) for c in d["counts"]),
                edges=tuple(float(e) for e in d.get("edges", ())),
                categories=tuple(str(c) for c in d.get("categories", ())),
                distinct=int(d.get("distinct", 0)),
                known=Bloom.from_dict(d["known"]) if d.get("known") else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ReferenceFormatError):
                raise
            raise ReferenceFormatError(f"feature {d.get('name') if isinstance(d, Mapping) else d!r}: {exc}") from exc
        if len(f.counts) != f.n_bins or any(not math.isfinite(e) for e in f.edges) or list(f.edges) != sorted(f.edges):
            raise ReferenceFormatError(
                f"feature {f.name!r}: counts do not match the bins, or edges are not sorted finite"
            )
        return f


def _g(x: float) -> str:
    return f"{x:.4g}"


def feature_reference(name: str, column: np.ndarray, kind: Kind | None = None, *, bins: int = DEFAULT_BINS,
                      top_k: int = DEFAULT_TOP_K,
                      min_category_rows: int = DEFAULT_MIN_CATEGORY_ROWS) -> FeatureReference:  # fmt: skip
    """The reference of one training column (kind inferred from its dtype and values unless given)."""
    column = np.asarray(column) if not isinstance(column, np.ndarray) else column
    kind = kind or infer_kind(column)
    rows = int(column.shape[0])
    if kind == "string":
        values, missing, mismatch = as_strings(column)
        cats, counts = np.unique(values, return_counts=True)
        order = np.lexsort((cats, -counts))  # most frequent first, ties by category
        order = order[counts[order] >= max(1, min_category_rows)][:top_k]
        top = tuple(str(c) for c in cats[order])
        in_top = np.zeros(len(cats), dtype=bool)
        in_top[order] = True
        singletons = int(((counts == 1) & ~in_top).sum())  # training values seen once, in "other"
        f = FeatureReference(name, kind, rows, int(missing.sum()), (), categories=top, distinct=len(cats),
                             known=Bloom.of(cats), type_mismatch=mismatch)  # fmt: skip
        binned = f.bin(column)  # every training value is known: the unseen bin is empty here
        loo = binned.bins.copy()
        loo[-2] -= singletons
        loo[-1] += singletons
        return replace(f, counts=tuple(int(c) for c in loo))
    nums, missing, mismatch = as_numbers(column, kind)
    finite = nums[np.isfinite(nums)]
    if kind == "bool":
        edges: tuple[float, ...] = (0.0, 1.0, 1.0)  # < false | false | true | > true
    elif len(finite) == 0:
        edges = ()
    else:
        lo, hi = float(finite.min()), float(finite.max())
        q = np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1]) if bins > 1 else np.array([])
        inner = sorted({float(x) for x in q if lo < x < hi})
        edges = (lo, *inner, hi)
    f = FeatureReference(name, kind, rows, int(missing.sum()), (), edges=edges, type_mismatch=mismatch)
    binned = f.bin(column)
    return replace(f, counts=tuple(int(c) for c in binned.bins))


@dataclass(frozen=True)
class Reference:
    features: tuple[FeatureReference, ...]
    prediction: FeatureReference
    rows: int
    bins: int = DEFAULT_BINS
    top_k: int = DEFAULT_TOP_K
    min_category_rows: int = DEFAULT_MIN_CATEGORY_ROWS
    meta: Mapping[str, str] = field(default_factory=dict)  # e.g. model name/version, free text, strings only

    @classmethod
    def build(cls, frame: Any, predictions: Sequence[Any] | np.ndarray, *, kinds: Mapping[str, Kind] | None = None,
              bins: int = DEFAULT_BINS, top_k: int = DEFAULT_TOP_K,
              min_category_rows: int = DEFAULT_MIN_CATEGORY_ROWS,
              meta: Mapping[str, str] | None = None) -> Reference:  # fmt: skip
        """The reference of a training frame (the signature's columns, in order) and the model's predictions on it."""
        cols = columns_of(frame)
        kinds = kinds or {}
        opts = {"bins": bins, "top_k": top_k, "min_category_rows": min_category_rows}
        feats = tuple(feature_reference(n, c, kinds.get(n), **opts) for n, c in cols.items())
        pred = feature_reference(PREDICTION, np.asarray(predictions).reshape(-1), kinds.get(PREDICTION), **opts)
        if any(f.rows != pred.rows for f in feats):
            raise ReferenceFormatError("reference: every column and the predictions must have the same length")
        return cls(feats, pred, pred.rows, bins, top_k, min_category_rows, dict(meta or {}))

    @cached_property
    def by_name(self) -> dict[str, FeatureReference]:
        return {f.name: f for f in self.features}

    @cached_property
    def string_features(self) -> frozenset[str]:
        """The names of the string features (a batch's pandas string columns of these are factorized)."""
        return frozenset(f.name for f in self.features if f.kind == "string")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "rows": self.rows,
            "bins": self.bins,
            "top_k": self.top_k,
            "min_category_rows": self.min_category_rows,
            "meta": dict(self.meta),
            "features": [f.to_dict() for f in self.features],
            "prediction": self.prediction.to_dict(),
        }

    def to_json(self) -> bytes:
        """The canonical JSON text (what `sha256` digests and what is stored)."""
        return canonical_json(self.to_dict())

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_json()).hexdigest()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Reference:
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            raise ReferenceFormatError(f"reference: expected an object with format {FORMAT}")
        try:
            feats = tuple(FeatureReference.from_dict(f) for f in d["features"])
            pred = FeatureReference.from_dict(d["prediction"])
            meta = {str(k): str(v) for k, v in dict(d.get("meta", {})).items()}
            ref = cls(feats, pred, int(d["rows"]), int(d["bins"]), int(d["top_k"]), int(d["min_category_rows"]), meta)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ReferenceFormatError):
                raise
            raise ReferenceFormatError(f"reference: {exc}") from exc
        if len({f.name for f in feats}) != len(feats):
            raise ReferenceFormatError("reference: duplicate feature names")
        return ref

    @classmethod
    def from_json(cls, text: bytes | str, expected_sha256: str | None = None) -> Reference:
        """Read a stored reference; with `expected_sha256`, refuse one whose canonical digest differs."""
        try:
            d = json.loads(text, parse_constant=_no_constant)
        except ValueError as exc:
            raise ReferenceFormatError(f"reference: not strict JSON: {exc}") from exc
        ref = cls.from_dict(d)
        if expected_sha256 is not None and ref.sha256 != expected_sha256:
            raise ReferenceFormatError(f"reference: sha256 {ref.sha256} is not the pinned {expected_sha256}")
        return ref


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
