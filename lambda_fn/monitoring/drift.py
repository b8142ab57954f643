"""Drift scores of a window's profile against the release's reference, per feature and for the prediction.

On the bins (every feature's bins plus a missing bin, so a completeness shift is drift too):
- **PSI**, population stability index: sum over bins of (q - p) * ln(q / p), p the reference share and q the
  current share. An empty bin would make it infinite, so both shares are floored at `EPSILON` = 1e-4 (no
  renormalisation; the convention of Evidently's `psi` test and of most credit-scoring code).
  Thresholds: < 0.1 stable, 0.1-0.25 moderate shift (warn), >= 0.25 significant shift (alert): the credit-risk
  convention (Siddiqi, *Credit Risk Scorecards*, 2006; Yurdakul, *Statistical properties of the population
  stability index*, 2018), which Evidently and most monitoring tools repeat.
- **Jensen-Shannon distance**, base 2: sqrt of the JS divergence, in [0, 1], symmetric, finite without smoothing.
  Warn at 0.1 (Evidently's default threshold for its `jensenshannon` test), alert at 0.2 (ours).
On raw samples, where the caller has them (captured records, a reference sample):
- **KS statistic** (two-sample, max CDF gap, in [0, 1]): warn 0.1, alert 0.2.
- **Wasserstein-1** divided by the reference standard deviation: warn 0.1 (Evidently's default for its
  normed `wasserstein` test), alert 0.2.

A window with fewer than `min_rows` rows (default 1,000) is "insufficient": no drift is claimed from it. The
sampling noise of PSI on same-distribution data grows like (bins - 1) * (1/n + 1/N), and Jensen-Shannon's
0.1 is meant for samples over 1,000 (Evidently applies it from there); at 1,000 rows and 12-23 bins the noise
is about 0.02-0.05, well below the alert threshold (tests/unit/test_monitor_false_positives.py measures the
rate). At 10 records a second that is under two minutes of traffic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from lambda_fn.monitoring.profile import FeatureCounts, Profile
from lambda_fn.monitoring.reference import FeatureReference, Reference

EPSILON = 1e-4
MIN_ROWS = 1000

Severity = Literal["alert", "warn", "ok", "insufficient"]
_RANK: dict[str, int] = {"alert": 3, "warn": 2, "ok": 1, "insufficient": 0}


@dataclass(frozen=True)
class Thresholds:
    psi: tuple[float, float] = (0.1, 0.25)
    js: tuple[float, float] = (0.1, 0.2)
    ks: tuple[float, float] = (0.1, 0.2)
    wasserstein: tuple[float, float] = (0.1, 0.2)
    min_rows: int = MIN_ROWS

    def to_dict(self) -> dict[str, Any]:
        return {"psi": list(self.psi), "js": list(self.js), "ks": list(self.ks),
                "wasserstein": list(self.wasserstein), "min_rows": self.min_rows}  # fmt: skip


DEFAULT_THRESHOLDS = Thresholds()


def shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.zeros(len(counts))


def psi(reference: np.ndarray, current: np.ndarray, epsilon: float = EPSILON) -> float:
    """PSI of two count (or share) vectors over the same bins, shares floored at `epsilon`."""
    p = np.maximum(shares(np.asarray(reference, dtype=np.float64)), epsilon)
    q = np.maximum(shares(np.asarray(current, dtype=np.float64)), epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) of two count vectors over the same bins."""
    p = shares(np.asarray(reference, dtype=np.float64))
    q = shares(np.asarray(current, dtype=np.float64))
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    div = (kl(p) + kl(q)) / 2
    return math.sqrt(min(1.0, max(0.0, div)))


def ks_statistic(reference: np.ndarray, current: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs."""
    a = np.sort(np.asarray(reference, dtype=np.float64))
    b = np.sort(np.asarray(current, dtype=np.float64))
    if len(a) == 0 or len(b) == 0:
        return 0.0
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / len(a)
    cdf_b = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def wasserstein_1(reference: np.ndarray, current: np.ndarray) -> float:
    """Wasserstein-1 (earth mover's) distance of two samples: the area between their empirical CDFs."""
    a = np.sort(np.asarray(reference, dtype=np.float64))
    b = np.sort(np.asarray(current, dtype=np.float64))
    if len(a) == 0 or len(b) == 0:
        return 0.0
    grid = np.sort(np.concatenate([a, b]))
    widths = np.diff(grid)
    cdf_a = np.searchsorted(a, grid[:-1], side="right") / len(a)
    cdf_b = np.searchsorted(b, grid[:-1], side="right") / len(b)
    return float(np.sum(np.abs(cdf_a - cdf_b) * widths))


def _level(value: float | None, pair: tuple[float, float]) -> Severity:
    if value is None:
        return "ok"
    return "alert" if value >= pair[1] else "warn" if value >= pair[0] else "ok"


def worst(levels: Sequence[Severity]) -> Severity:
    return max(levels, key=lambda s: _RANK[s], default="ok")


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str
    severity: Severity
    rows: int
    psi: float | None
    js: float | None
    ks: float | None = None
    wasserstein: float | None = None  # normed by the reference standard deviation
    reasons: tuple[str, ...] = field(default=())  # e.g. ("psi >= 0.25",)

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "kind": self.kind, "severity": self.severity, "rows": self.rows,
                "psi": self.psi, "js": self.js, "ks": self.ks, "wasserstein": self.wasserstein,
                "reasons": list(self.reasons)}  # fmt: skip


def with_missing(bins: np.ndarray, missing: int) -> np.ndarray:
    return np.append(np.asarray(bins, dtype=np.float64), float(missing))


def feature_drift(
    ref: FeatureReference,
    current: FeatureCounts,
    *,
    rows: int,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    reference_sample: np.ndarray | None = None,
    current_sample: np.ndarray | None = None,
) -> FeatureDrift:
    """The drift of one feature (or the prediction) in a window of `rows` rows."""
    if rows < thresholds.min_rows:
        return FeatureDrift(
            ref.name, ref.kind, "insufficient", rows, None, None, reasons=(f"rows < {thresholds.min_rows}",)
        )
    p = with_missing(np.array(ref.counts), ref.missing)
    q = with_missing(current.bins, current.missing)
    s_psi, s_js = psi(p, q), js_distance(p, q)
    s_ks = s_w = None
    if reference_sample is not None and current_sample is not None and ref.kind != "string":
        a = np.asarray(reference_sample, dtype=np.float64)
        b = np.asarray(current_sample, dtype=np.float64)
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        if len(a) >= 2 and len(b) >= thresholds.min_rows:
            s_ks = ks_statistic(a, b)
            sd = float(np.std(a))
            s_w = wasserstein_1(a, b) / sd if sd > 0 else None
    checks = [("psi", s_psi, thresholds.psi), ("js", s_js, thresholds.js), ("ks", s_ks, thresholds.ks),
              ("wasserstein", s_w, thresholds.wasserstein)]  # fmt: skip
    levels = [_level(v, pair) for _, v, pair in checks]
    reasons = tuple(f"{name} >= {pair[1] if lvl == 'alert' else pair[0]}"
                    for (name, _, pair), lvl in zip(checks, levels, strict=True) if lvl != "ok")  # fmt: skip
    return FeatureDrift(ref.name, ref.kind, worst(levels), rows, s_psi, s_js, s_ks, s_w, reasons)


def profile_drift(
    reference: Reference,
    profile: Profile,
    *,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    samples: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> list[FeatureDrift]:
    """Every feature's and the prediction's drift, most severe first (then by PSI, then by name).

    `samples` maps a feature (or "prediction") to (reference sample, current sample) for KS and Wasserstein.
    """
    if profile.reference_sha256 != reference.sha256:
        raise ValueError("the profile was made with another reference")
    samples = samples or {}
    out = []
    for ref in (*reference.features, reference.prediction):
        counts = profile.prediction if ref is reference.prediction else profile.features[ref.name]
        pair = samples.get(ref.name)
        out.append(feature_drift(ref, counts, rows=profile.rows, thresholds=thresholds,
                                 reference_sample=pair[0] if pair else None,
                                 current_sample=pair[1] if pair else None))  # fmt: skip
    return rank(out)


def rank(results: Sequence[FeatureDrift]) -> list[FeatureDrift]:
    return sorted(results, key=lambda r: (-_RANK[r.severity], -(r.psi or 0.0), r.feature))
