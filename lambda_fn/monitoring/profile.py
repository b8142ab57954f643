"""A small mergeable profile of scored batches: fixed-bin counts per feature and for the prediction.

Each scored batch adds its counts (`add_batch`); the monitor merges profiles of any set of batches over any window
(`merge` only adds counts, so it is associative and commutative, and merging the profiles of two batches equals the
profile of the two batches together). The bins are those of the release's reference (`reference.py`), which the
profile pins by sha256: profiles of different references, or of different variants, do not merge.

Per feature: `bins` (bin 0 and the last bin of a number are below the training minimum / above its maximum),
`missing` (None, NaN, NA, or the column absent), `type_mismatch` (present but of another type: not binned),
`unseen` (strings not in the training vocabulary). Per profile: `rows`, `batches`, the prediction's counts,
`missing_columns` (feature → rows of batches without that column) and `extra_columns` (name → rows of batches
with a column the reference does not know; at most `MAX_EXTRA_PER_BATCH` names per batch are counted).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lambda_fn.monitoring.columns import Columns, cut_name
from lambda_fn.monitoring.reference import FORMAT, PREDICTION, Binned, FeatureReference, Reference, canonical_json

MAX_EXTRA_PER_BATCH = 16


class ProfileError(ValueError):
    """Profiles that cannot be read, added to, or merged."""


@dataclass
class FeatureCounts:
    bins: np.ndarray  # int64
    missing: int = 0
    type_mismatch: int = 0
    unseen: int = 0

    @classmethod
    def empty(cls, n_bins: int) -> FeatureCounts:
        return cls(np.zeros(n_bins, dtype=np.int64))

    @property
    def present(self) -> int:
        return int(self.bins.sum())

    @property
    def below(self) -> int:
        """Values below the reference minimum (numbers; bin 0)."""
        return int(self.bins[0]) if len(self.bins) > 2 else 0

    @property
    def above(self) -> int:
        """Values above the reference maximum (numbers; the last bin)."""
        return int(self.bins[-1]) if len(self.bins) > 2 else 0

    def add(self, other: FeatureCounts) -> None:
        if len(other.bins) != len(self.bins):
            raise ProfileError("feature counts with different bins")
        self.bins = self.bins + other.bins
        self.missing += other.missing
        self.type_mismatch += other.type_mismatch
        self.unseen += other.unseen

    def copy(self) -> FeatureCounts:
        return FeatureCounts(self.bins.copy(), self.missing, self.type_mismatch, self.unseen)

    def to_dict(self) -> dict[str, Any]:
        return {"bins": [int(b) for b in self.bins], "missing": self.missing, "type_mismatch": self.type_mismatch,
                "unseen": self.unseen}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureCounts:
        bins = np.array([int(b) for b in d["bins"]], dtype=np.int64)
        c = cls(bins, int(d["missing"]), int(d["type_mismatch"]), int(d["unseen"]))
        if (bins < 0).any() or min(c.missing, c.type_mismatch, c.unseen) < 0 or len(bins) == 0:
            raise ProfileError("negative or empty counts")
        return c


@dataclass
class Profile:
    reference_sha256: str
    variant: str
    features: dict[str, FeatureCounts]
    prediction: FeatureCounts
    rows: int = 0
    batches: int = 0
    missing_columns: dict[str, int] = field(default_factory=dict)
    extra_columns: dict[str, int] = field(default_factory=dict)
    reference: Reference | None = field(default=None, repr=False, compare=False)

    @classmethod
    def new(cls, reference: Reference, variant: str = "primary") -> Profile:
        feats = {f.name: FeatureCounts.empty(f.n_bins) for f in reference.features}
        return cls(reference.sha256, variant, feats, FeatureCounts.empty(reference.prediction.n_bins),
                   reference=reference)  # fmt: skip

    def add_batch(self, frame_or_columns: Any, predictions: Sequence[Any] | np.ndarray) -> None:
        """Add one scored batch: its feature columns (a DataFrame or a mapping of name → values) and predictions."""
        ref = self._ref()
        self.add_columns(Columns(frame_or_columns, strings=ref.string_features), predictions)

    def add_columns(self, columns: Columns, predictions: Sequence[Any] | np.ndarray) -> None:
        """`add_batch` of columns already read (the emitter reads a batch's once, for the profile and the capture)."""
        ref = self._ref()
        coded = columns.coded
        cols = columns.arrays()
        preds = np.asarray(predictions).reshape(-1)
        n = len(preds)
        if any(len(c) != n for c in cols.values()) or any(len(c) != n for c, _ in coded.values()):
            raise ProfileError("every column and the predictions must have the same length")
        for f in ref.features:
            counts = self.features[f.name]
            if f.name in coded:
                _count(counts, f.bin_coded(*coded[f.name]))
                continue
            col = cols.get(f.name)
            if col is None:
                self.missing_columns[f.name] = self.missing_columns.get(f.name, 0) + n
                counts.missing += n
                continue
            _add(counts, f, col)
        extra = sorted(name for name in cols if name not in ref.by_name)[:MAX_EXTRA_PER_BATCH]
        for name in extra:
            key = cut_name(name)
            self.extra_columns[key] = self.extra_columns.get(key, 0) + n
        _add(self.prediction, ref.prediction, preds)
        self.rows += n
        self.batches += 1

    def _ref(self) -> Reference:
        if self.reference is None:
            raise ProfileError("a profile read from JSON has no reference: pass reference= to from_dict to add")
        return self.reference

    def merge(self, other: Profile) -> Profile:
        """A new profile with the counts of both (neither is changed)."""
        return _merge_into(self.copy(), other)

    def copy(self) -> Profile:
        return Profile(self.reference_sha256, self.variant, {k: v.copy() for k, v in self.features.items()},
                       self.prediction.copy(), self.rows, self.batches, dict(self.missing_columns),
                       dict(self.extra_columns), self.reference)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "reference_sha256": self.reference_sha256,
            "variant": self.variant,
            "rows": self.rows,
            "batches": self.batches,
            "features": {k: v.to_dict() for k, v in self.features.items()},
            PREDICTION: self.prediction.to_dict(),
            "missing_columns": dict(sorted(self.missing_columns.items())),
            "extra_columns": dict(sorted(self.extra_columns.items())),
        }

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], reference: Reference | None = None) -> Profile:
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            raise ProfileError(f"profile: expected an object with format {FORMAT}")
        try:
            p = cls(
                str(d["reference_sha256"]),
                str(d["variant"]),
                {str(k): FeatureCounts.from_dict(v) for k, v in d["features"].items()},
                FeatureCounts.from_dict(d[PREDICTION]),
                int(d["rows"]),
                int(d["batches"]),
                {str(k): int(v) for k, v in d["missing_columns"].items()},
                {str(k): int(v) for k, v in d["extra_columns"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, ProfileError):
                raise
            raise ProfileError(f"profile: {exc}") from exc
        if reference is not None:
            if reference.sha256 != p.reference_sha256:
                raise ProfileError("profile: made with another reference")
            shapes = {f.name: f.n_bins for f in reference.features}
            if {k: len(v.bins) for k, v in p.features.items()} != shapes:
                raise ProfileError("profile: features or bins differ from the reference")
            p.reference = reference
        return p

    @classmethod
    def from_json(cls, text: bytes | str, reference: Reference | None = None) -> Profile:
        try:
            d = json.loads(text)
        except ValueError as exc:
            raise ProfileError(f"profile: not JSON: {exc}") from exc
        return cls.from_dict(d, reference)


def _add(counts: FeatureCounts, f: FeatureReference, column: np.ndarray) -> None:
    _count(counts, f.bin(column))


def _count(counts: FeatureCounts, b: Binned) -> None:
    counts.bins += b.bins
    counts.missing += b.missing
    counts.type_mismatch += b.type_mismatch
    counts.unseen += b.unseen


def merge_all(profiles: Sequence[Profile]) -> Profile:
    """The merge of one or more profiles (in any order: the result is the same)."""
    if not profiles:
        raise ProfileError("nothing to merge")
    out = profiles[0].copy()
    for p in profiles[1:]:
        out = _merge_into(out, p)
    return out


def _merge_into(out: Profile, other: Profile) -> Profile:
    """`out.merge(other)` without the copy (for long merges)."""
    if (out.reference_sha256, out.variant) != (other.reference_sha256, other.variant):
        raise ProfileError("profiles of different references or variants do not merge")
    if out.features.keys() != other.features.keys():
        raise ProfileError("profiles with different features do not merge")
    for name, counts in other.features.items():
        out.features[name].add(counts)
    out.prediction.add(other.prediction)
    out.rows += other.rows
    out.batches += other.batches
    for target, source in ((out.missing_columns, other.missing_columns), (out.extra_columns, other.extra_columns)):
        for k, v in source.items():
            target[k] = target.get(k, 0) + v
    if out.reference is None:
        out.reference = other.reference
    return out
