"""Same-distribution traffic gives no drift alert: the false-positive rate over 200 seeds, at the minimum window."""

from __future__ import annotations

from lambda_fn.monitoring.drift import MIN_ROWS, profile_drift
from lambda_fn.monitoring.profile import Profile
from lambda_fn.monitoring.quality import check_quality
from lambda_fn.monitoring.reference import Reference
from tests.unit.test_monitor_reference import taxi_frame

SEEDS = 200
FP_BOUND = 0.01  # at most 1 % of windows may alert on unchanged traffic


def test_same_distribution_gives_no_alert_over_200_seeds() -> None:
    """Per seed: MIN_ROWS training rides and MIN_ROWS serving rides from one draw (the same distribution)."""
    rows = MIN_ROWS
    alerts = warns = violations = 0
    worst = 0.0
    for seed in range(SEEDS):
        frame, y = taxi_frame(2 * rows, 50_000 + seed)
        ref = Reference.build(frame.iloc[:rows], y[:rows])
        p = Profile.new(ref)
        for i in range(rows, 2 * rows, 500):
            p.add_batch(frame.iloc[i : i + 500], y[i : i + 500])
        drift = profile_drift(ref, p)
        severities = {d.severity for d in drift}
        alerts += "alert" in severities
        warns += "warn" in severities
        violations += bool(check_quality(ref, p))
        worst = max(worst, *(d.psi or 0.0 for d in drift))
    rate, warn_rate, quality_rate = alerts / SEEDS, warns / SEEDS, violations / SEEDS
    print(f"\nsame distribution, {rows} vs {rows} rows, {SEEDS} seeds: drift alert rate {rate:.3f} "
          f"(bound {FP_BOUND}), warn rate {warn_rate:.3f}, quality-violation rate {quality_rate:.3f}, "
          f"worst PSI {worst:.3f}")  # fmt: skip
    assert rate <= FP_BOUND
    assert quality_rate <= 0.05
