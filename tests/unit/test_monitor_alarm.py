"""CloudWatch's alarm rule evaluated in-process (servingkit.monitor_alarm): periods, M of N, missing data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from servingkit.monitor_alarm import AlarmRule, first_alarm, gated, period_maxima

T0 = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def test_one_of_one_alarms_at_the_end_of_the_first_breaching_period() -> None:
    points = [(T0 + MIN * i, v) for i, v in enumerate([0, 0, 0, 2, 3])]
    assert first_alarm(points, AlarmRule(MIN)) == T0 + MIN * 4


def test_statistic_is_the_maximum_within_a_period() -> None:
    points = [(T0, 0.0), (T0 + timedelta(seconds=30), 1.0), (T0 + MIN, 0.0)]
    assert period_maxima(points, MIN) == {T0: 1.0, T0 + MIN: 0.0}
    assert first_alarm(points, AlarmRule(MIN)) == T0 + MIN
    assert first_alarm(points, AlarmRule(2 * MIN, threshold=2)) is None


def test_m_of_n_and_missing_data_not_breaching() -> None:
    rule = AlarmRule(MIN, evaluation_periods=3, datapoints_to_alarm=2)
    gap = [(T0, 1.0), (T0 + MIN * 3, 1.0)]  # the periods between have no data: not breaching
    assert first_alarm(gap, rule) is None
    assert first_alarm([(T0, 1.0), (T0 + MIN * 2, 1.0)], rule) == T0 + MIN * 3
    assert first_alarm([], rule) is None


def test_invalid_rules_are_refused() -> None:
    with pytest.raises(ValueError):
        AlarmRule(MIN, evaluation_periods=1, datapoints_to_alarm=2)
    with pytest.raises(ValueError):
        AlarmRule(timedelta(0))


def test_strict_rule_is_greater_than_the_threshold() -> None:
    rule = AlarmRule(MIN, threshold=1.2, strict=True)
    assert first_alarm([(T0, 1.2)], rule) is None
    assert first_alarm([(T0, 1.2), (T0 + MIN, 1.21)], rule) == T0 + MIN * 2
    assert rule.describe().startswith("Maximum > 1.2 ")


def test_gated_degradation_needs_the_minimum_of_labelled_rows() -> None:
    """IF(labelled >= 100, degradation, 0) > 1.2: a 5x ratio on 12 labels is noise, 1.3x on 150 is an alarm."""
    rule = AlarmRule(MIN, threshold=1.2, strict=True)
    ratio = [(T0, 5.0), (T0 + MIN, 5.0), (T0 + MIN * 2, 1.3)]
    labelled = [(T0, 12.0), (T0 + MIN, 99.0), (T0 + MIN * 2, 150.0)]
    series = gated(ratio, labelled, 100, MIN)
    assert series == [(T0, 0.0), (T0 + MIN, 0.0), (T0 + MIN * 2, 1.3)]
    assert first_alarm(series, rule) == T0 + MIN * 3
    assert first_alarm(gated(ratio[:2], labelled[:2], 100, MIN), rule) is None
    # Without labelled rows there is no datapoint at all (missing data: not breaching), with or without a ratio.
    assert gated(ratio, [], 100, MIN) == []
    # Labelled rows but no ratio (no training metrics): nothing to judge.
    assert gated([], labelled, 100, MIN) == [(T0, 0.0), (T0 + MIN, 0.0)]
