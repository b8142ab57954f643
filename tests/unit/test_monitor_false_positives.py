"""Same-distribution traffic gives no drift alert: the false-positive rate over 200 seeds, at the minimum window
(`servingkit.bench.monitor.false_positives`, the figure `servingkit bench monitor` prints for the README)."""

from __future__ import annotations

from lambda_fn.monitoring.drift import MIN_ROWS
from servingkit.bench.monitor import false_positives

SEEDS = 200
FP_BOUND = 0.01  # at most 1 % of windows may alert on unchanged traffic


def test_same_distribution_gives_no_alert_over_200_seeds() -> None:
    """Per seed: MIN_ROWS training rides and MIN_ROWS serving rides from one draw (the same distribution)."""
    fp = false_positives(SEEDS)
    assert (fp["seeds"], fp["rows"]) == (SEEDS, MIN_ROWS)
    print(f"\nsame distribution, {MIN_ROWS} vs {MIN_ROWS} rows, {SEEDS} seeds: drift alert rate {fp['alert_rate']:.3f} "
          f"(bound {FP_BOUND}), warn rate {fp['warn_rate']:.3f}, quality-violation rate "
          f"{fp['quality_violation_rate']:.3f}, worst PSI {fp['worst_psi']:.3f}")  # fmt: skip
    assert fp["alert_rate"] <= FP_BOUND
    assert fp["quality_violation_rate"] <= 0.05
    assert fp["warn_rate"] < 0.1 and fp["worst_psi"] < 0.25
