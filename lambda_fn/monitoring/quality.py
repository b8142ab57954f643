"""Data-quality checks of a window's merged profile against the reference, after SageMaker Model Monitor's.

Each failed check is a `Violation` (feature, check, observed, expected, threshold, detail). Shares are of the
window's rows (missing) or of its present values (type, unseen, out of range). The checks and their defaults:

| check | violation when | default |
| --- | --- | --- |
| `missing_column` | a feature's column was absent from some batch (share of rows) | > 0 |
| `extra_column` | a column the reference does not know appeared (share of rows) | > 0 |
| `data_type` | present values of another type than the reference's | share > 0 |
| `completeness` | missing share above the reference's | + tolerance |
| `unseen_categories` | strings not in the training vocabulary, over the expected share | + tolerance |
| `out_of_range` | numbers below the training min or above its max | + tolerance |

The tolerance of a share check is `max(t, 3 * sqrt(p * (1 - p) * (1/n + 1/N)))`: the default `t` (0.02
completeness, 0.01 unseen and out of range), or three standard deviations of the difference of two binomial
shares `p` at the window's `n` and the reference's `N` rows, whichever is larger, so that unchanged traffic does
not violate by chance. Expected shares come from the reference: its missing share; for unseen categories, the
leave-one-out (Good-Turing) share of training singletons; for out-of-range, 2 / (N + 1), the chance that a new
draw from the training distribution falls below the minimum or above the maximum of N training values.

SageMaker names the same ideas `missing_column_check`, `extra_column_check`, `data_type_check`,
`completeness_check`, `baseline_drift_check` (categorical values) and its range constraints; the defaults here
are ours (any structural change is a violation; a share tolerance where training data shows noise). A window
with fewer than `min_rows` rows reports only the structural checks (missing and extra columns).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lambda_fn.monitoring.drift import MIN_ROWS
from lambda_fn.monitoring.profile import Profile
from lambda_fn.monitoring.reference import Reference


@dataclass(frozen=True)
class QualityThresholds:
    missing_column: float = 0.0
    extra_column: float = 0.0
    data_type: float = 0.0
    completeness_tolerance: float = 0.02
    unseen_categories: float = 0.01
    out_of_range: float = 0.01
    min_rows: int = MIN_ROWS

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


DEFAULT_QUALITY = QualityThresholds()


@dataclass(frozen=True)
class Violation:
    feature: str
    check: str
    observed: float
    expected: float
    threshold: float
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _share(part: int, whole: int) -> float:
    return part / whole if whole > 0 else 0.0


def _slack(tolerance: float, p: float, n: int, n_ref: int) -> float:
    if n <= 0 or n_ref <= 0:
        return tolerance
    return max(tolerance, 3.0 * math.sqrt(p * (1.0 - p) * (1.0 / n + 1.0 / n_ref)))


def check_quality(
    reference: Reference, profile: Profile, thresholds: QualityThresholds = DEFAULT_QUALITY
) -> list[Violation]:
    """Every violation of the window, structural ones first, then by feature."""
    if profile.reference_sha256 != reference.sha256:
        raise ValueError("the profile was made with another reference")
    rows = profile.rows
    out: list[Violation] = []
    for name, n in sorted(profile.missing_columns.items()):
        share = _share(n, rows)
        if share > thresholds.missing_column:
            out.append(Violation(name, "missing_column", share, 0.0, thresholds.missing_column,
                                 f"absent from batches holding {n} of {rows} rows"))  # fmt: skip
    for name, n in sorted(profile.extra_columns.items()):
        share = _share(n, rows)
        if share > thresholds.extra_column:
            out.append(Violation(name, "extra_column", share, 0.0, thresholds.extra_column,
                                 f"present in batches holding {n} of {rows} rows"))  # fmt: skip
    if rows < thresholds.min_rows:
        return out
    for ref in (*reference.features, reference.prediction):
        c = profile.prediction if ref is reference.prediction else profile.features[ref.name]
        present = c.present
        typed = present + c.type_mismatch
        share = _share(c.type_mismatch, typed)
        if share > thresholds.data_type:
            out.append(Violation(ref.name, "data_type", share, _share(ref.type_mismatch, ref.rows - ref.missing),
                                 thresholds.data_type, f"{c.type_mismatch} values are not {ref.kind}"))  # fmt: skip
        missing = _share(c.missing, rows)
        limit = ref.missing_share + _slack(thresholds.completeness_tolerance, ref.missing_share, rows, ref.rows)
        if missing > limit:
            out.append(Violation(ref.name, "completeness", missing, ref.missing_share, limit,
                                 f"{c.missing} of {rows} rows missing"))  # fmt: skip
        if ref.kind == "string" and ref.known is not None:
            share = _share(c.unseen, present)
            expected = _share(ref.counts[-1], sum(ref.counts))
            limit = expected + _slack(thresholds.unseen_categories, expected, present, sum(ref.counts))
            if share > limit:
                out.append(Violation(ref.name, "unseen_categories", share, expected, limit,
                                     f"{c.unseen} of {present} values not seen in training"))  # fmt: skip
        if ref.kind == "number" and ref.edges:
            share = _share(c.below + c.above, present)
            n_ref = sum(ref.counts)
            expected = _share(ref.counts[0] + ref.counts[-1], n_ref) + 2.0 / (n_ref + 1)
            limit = expected + _slack(thresholds.out_of_range, expected, present, n_ref)
            if share > limit:
                out.append(Violation(ref.name, "out_of_range", share, expected, limit,
                                     f"{c.below} below {ref.min:g}, {c.above} above {ref.max:g}"))  # fmt: skip
    return out
