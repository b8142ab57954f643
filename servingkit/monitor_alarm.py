"""CloudWatch's alarm rule, evaluated in-process on published datapoints (moto stores alarms, never evaluates them).

The monitor's drift alarm (`infra.monitoring`, `<prefix>-DriftedFeatures-<variant>`) is: statistic Maximum over a
period equal to the schedule's, `GreaterThanOrEqualToThreshold` 1, one evaluation period, one datapoint to alarm,
missing data not breaching. CloudWatch evaluates an alarm on whole periods: the datapoints whose timestamps fall in
[t, t + period) make period t's statistic, and the alarm goes to ALARM when, of the last `evaluation_periods`
periods, at least `datapoints_to_alarm` breach (a period with no data counts as not breaching). `first_alarm`
returns the end of the first period at which that holds — the earliest time CloudWatch has the whole period, so
the delay it gives is an upper bound of the real one (which also evaluates partial periods as data arrives).

The `QualityDegradation` alarm is on metric math, `IF(labelled >= N, degradation, 0)` (`infra.monitoring`), with
`GreaterThanThreshold`: `gated` computes that series per period from the two metrics' datapoints, and an
`AlarmRule(strict=True)` evaluates it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class AlarmRule:
    period: timedelta
    threshold: float = 1.0
    evaluation_periods: int = 1
    datapoints_to_alarm: int = 1
    strict: bool = False  # True: GreaterThanThreshold; False: GreaterThanOrEqualToThreshold

    def __post_init__(self) -> None:
        if self.period <= timedelta(0) or not 1 <= self.datapoints_to_alarm <= self.evaluation_periods:
            raise ValueError("alarm rule: period > 0 and 1 <= datapoints_to_alarm <= evaluation_periods")

    def breaches(self, value: float | None) -> bool:
        """A period's statistic against the threshold; no value (missing data) is not breaching."""
        if value is None:
            return False
        return value > self.threshold if self.strict else value >= self.threshold

    def describe(self) -> str:
        sign = ">" if self.strict else ">="
        return (f"Maximum {sign} {self.threshold:g} in {self.datapoints_to_alarm} of {self.evaluation_periods} "
                f"period(s) of {self.period.total_seconds() / 60:g} min, missing data not breaching")  # fmt: skip


def _period_start(t: datetime, period: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((t.astimezone(UTC) - epoch) // period) * period


def period_maxima(points: Iterable[tuple[datetime, float]], period: timedelta) -> dict[datetime, float]:
    """Maximum per period start (CloudWatch's statistic over [t, t + period))."""
    out: dict[datetime, float] = {}
    for t, v in points:
        start = _period_start(t, period)
        out[start] = max(v, out.get(start, v))
    return out


def first_alarm(points: Iterable[tuple[datetime, float]], rule: AlarmRule) -> datetime | None:
    """When the alarm first goes to ALARM on these datapoints (the end of the period that tips it), else None."""
    maxima = period_maxima(points, rule.period)
    if not maxima:
        return None
    t, last = min(maxima), max(maxima)
    while t <= last:
        recent = [t - rule.period * i for i in range(rule.evaluation_periods)]
        breaching = sum(1 for p in recent if rule.breaches(maxima.get(p)))
        if breaching >= rule.datapoints_to_alarm:
            return t + rule.period
        t += rule.period
    return None


def gated(
    values: Iterable[tuple[datetime, float]],
    gate: Iterable[tuple[datetime, float]],
    minimum: float,
    period: timedelta,
) -> list[tuple[datetime, float]]:
    """Metric math `IF(gate >= minimum, value, 0)` on the periods' maxima: one datapoint per period the gate has
    data in (0 below `minimum`; none when it passes but `value` has no datapoint there); no gate, no datapoint."""
    by_value, by_gate = period_maxima(values, period), period_maxima(gate, period)
    out = []
    for start, count in sorted(by_gate.items()):
        if count < minimum:
            out.append((start, 0.0))
        elif start in by_value:
            out.append((start, by_value[start]))
    return out
