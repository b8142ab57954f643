"""The one way every benchmark measures: CPU time beside wall time, compared runs interleaved, repeated.

On a shared machine wall time follows the neighbours; CPU time (`resource.getrusage`, this process and its
reaped children) follows the work. So each compared run is timed both ways, the runs take turns
(A B C A B C ...) so a burst of load hits all of them alike, each is repeated, and the minimum and the median
are kept. A target is judged on the CPU-time ratio of minima: the run least disturbed by the machine.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servingkit.bench import BenchError
from servingkit.bench.util import descendants

SCHEMA = "servingkit-bench/1"
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds() -> float:
    """User + system CPU of this process (every thread) and of its children that have been waited for."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a live process and all its live descendants (and what they reaped), from /proc (Linux): for a
    server the benchmark does not wait for, whose CPU getrusage only reports once it has exited."""
    total = 0.0
    for p in descendants(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += sum(int(x) for x in fields[11:15]) / _TICK  # utime stime cutime cstime
        except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
            continue
    return total


@dataclass(frozen=True)
class Sample:
    """One timed run: CPU seconds and wall seconds."""

    cpu: float
    wall: float


def timed(fn: Callable[[], object], cpu: Callable[[], float] = cpu_seconds) -> Sample:
    """Run `fn` once; its CPU (by `cpu`, a cumulative clock) and wall seconds."""
    c, w = cpu(), time.perf_counter()
    fn()
    return Sample(cpu() - c, time.perf_counter() - w)


@dataclass
class Series:
    """Every sample of one compared run, and their minimum and median, CPU and wall."""

    samples: list[Sample] = field(default_factory=list)

    def add(self, sample: Sample) -> None:
        """Raises BenchError for a negative time: a clock read wrong (a process missed in a tree walk), not a run
        that cost less than nothing; kept, it would become a minimum and a ratio."""
        if not (sample.cpu >= 0 and sample.wall >= 0):
            raise BenchError(f"a run measured {sample.cpu:.6f} s of CPU and {sample.wall:.6f} s of wall time: "
                             "a clock read wrong; the figures are not kept")  # fmt: skip
        self.samples.append(sample)

    @property
    def cpu_min(self) -> float:
        return min(s.cpu for s in self.samples)

    @property
    def cpu_median(self) -> float:
        return statistics.median(s.cpu for s in self.samples)

    @property
    def wall_min(self) -> float:
        return min(s.wall for s in self.samples)

    @property
    def wall_median(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    def summary(self, scale: float = 1000.0) -> dict[str, Any]:
        """Minima and medians in milliseconds (scale 1000) or seconds (scale 1), and the raw samples."""
        return {
            "cpu_min": round(self.cpu_min * scale, 3),
            "cpu_median": round(self.cpu_median * scale, 3),
            "wall_min": round(self.wall_min * scale, 3),
            "wall_median": round(self.wall_median * scale, 3),
            "repeats": len(self.samples),
            "unit": "ms" if scale == 1000.0 else "s",
        }


Progress = Callable[[str], None]


def _timed_call(fn: Callable[[], Sample | None]) -> tuple[Sample | None, Sample]:
    """What `fn` measured itself (or None), and its time measured here."""
    c, w = cpu_seconds(), time.perf_counter()
    own = fn()
    return own, Sample(cpu_seconds() - c, time.perf_counter() - w)


def interleave(
    runs: Mapping[str, Callable[[], Sample | None]],
    repeats: int,
    *,
    warmup: int = 1,
    progress: Progress | None = None,
) -> dict[str, Series]:
    """Call each run in turn, `repeats` rounds (A B C A B C ...) after `warmup` untimed rounds.

    A run either does its work and returns None (it is timed here with `timed`), or measures itself
    (a child process, a server) and returns its Sample."""
    series = {name: Series() for name in runs}
    for _ in range(warmup):
        for fn in runs.values():
            fn()
    for i in range(repeats):
        for name, fn in runs.items():
            own, sample = _timed_call(fn)
            series[name].add(own or sample)
            if progress:
                progress(f"{name} {i + 1}/{repeats}")
    return series


def ratio_of_minima(kit: Series, base: Series, *, clock: str = "cpu") -> float:
    """kit / base, each its minimum over the repeats (clock "cpu" or "wall")."""
    a, b = (kit.cpu_min, base.cpu_min) if clock == "cpu" else (kit.wall_min, base.wall_min)
    return a / b if b > 0 else math.nan


@dataclass(frozen=True)
class Target:
    """A target on a ratio: `ratio <= limit` (or `>=` when `at_least`); margin > 0 when met."""

    name: str
    ratio: float
    limit: float
    at_least: bool = False

    @property
    def met(self) -> bool:
        """Never for a ratio that is no number (a baseline measured at zero): no target is met by a division."""
        if not math.isfinite(self.ratio):
            return False
        return self.ratio >= self.limit if self.at_least else self.ratio <= self.limit

    @property
    def margin(self) -> float:
        """How far inside (positive) or outside (negative) the limit, as a fraction of the limit."""
        return (self.ratio - self.limit) / self.limit if self.at_least else (self.limit - self.ratio) / self.limit

    def line(self) -> str:
        sign = ">=" if self.at_least else "<="
        if not math.isfinite(self.ratio):
            return f"{self.name}: no ratio, a baseline measured 0 s (target {sign} {self.limit}x) MISSED"
        verdict = "met" if self.met else "MISSED"
        return f"{self.name}: {self.ratio:.2f}x (target {sign} {self.limit}x) {verdict}, margin {self.margin:+.0%}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ratio": round(self.ratio, 3) if math.isfinite(self.ratio) else None,  # strict JSON: null, no NaN
            "limit": self.limit,
            "at_least": self.at_least,
            "met": self.met,
            "margin": round(self.margin, 3) if math.isfinite(self.ratio) else None,
        }


def versions(names: Iterable[str]) -> dict[str, str | None]:
    """Installed versions of the named distributions (None when absent)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPUs, load, Python, platform."""
    return {
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.machine(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def strict_json(value: Any, *, indent: int | None = None) -> str:
    """`value` as strict JSON (RFC 8259): a ratio or figure that is no number (NaN, an infinity) becomes null, a
    Target its `as_dict`, anything else unknown its `str`; `json.dumps` alone would write `NaN` / `Infinity`."""

    def clean(v: Any) -> Any:
        if isinstance(v, float):
            return v if math.isfinite(v) else None
        if isinstance(v, Target):
            return v.as_dict()
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), indent=indent, allow_nan=False, default=str)
