"""servingkit.bench.measure: the interleaving order, the ratio of minima, targets, and the report's JSON schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from servingkit.bench import measure
from servingkit.bench.measure import Sample, Series, Target, interleave, ratio_of_minima
from servingkit.bench.suite import _jsonable, _targets


def test_runs_take_turns_after_the_warmup() -> None:
    calls: list[str] = []
    runs = {name: (lambda name=name: calls.append(name)) for name in "ABC"}
    series = interleave(runs, repeats=3, warmup=1)  # type: ignore[arg-type]
    assert calls == list("ABC") * 4  # one warm-up round, then three timed rounds, A B C each time
    assert {name: len(s.samples) for name, s in series.items()} == {"A": 3, "B": 3, "C": 3}


def test_a_run_that_measures_itself_keeps_its_own_sample() -> None:
    series = interleave({"child": lambda: Sample(cpu=2.5, wall=4.0)}, repeats=2, warmup=0)
    assert series["child"].samples == [Sample(2.5, 4.0), Sample(2.5, 4.0)]


def test_cpu_time_counts_work_not_waiting() -> None:
    def spin() -> None:
        end = time.process_time() + 0.05
        while time.process_time() < end:
            pass

    series = interleave({"sleep": lambda: time.sleep(0.05), "spin": spin}, repeats=2, warmup=0)
    assert series["sleep"].wall_min >= 0.05 and series["sleep"].cpu_median < 0.02
    assert series["spin"].cpu_min >= 0.05


def test_children_cpu_is_counted_once_they_are_reaped() -> None:
    code = "import time\nend = time.process_time() + 0.2\nwhile time.process_time() < end: pass"
    before = measure.cpu_seconds()
    subprocess.run([sys.executable, "-c", code], check=True)
    assert measure.cpu_seconds() - before >= 0.2


def test_tree_cpu_of_a_live_process_includes_it() -> None:
    assert measure.tree_cpu_seconds(os.getpid()) > 0
    assert measure.tree_cpu_seconds(2**22 + 12345) == 0.0  # no such process: nothing, no error


def test_min_median_and_the_ratio_of_minima() -> None:
    kit = Series([Sample(3.0, 9.0), Sample(2.0, 5.0), Sample(10.0, 12.0)])
    floor = Series([Sample(1.0, 4.0), Sample(4.0, 4.5), Sample(1.6, 8.0)])
    assert (kit.cpu_min, kit.cpu_median, kit.wall_min, kit.wall_median) == (2.0, 3.0, 5.0, 9.0)
    assert ratio_of_minima(kit, floor) == 2.0  # 2.0 / 1.0: minima, whatever the medians say
    assert ratio_of_minima(kit, floor, clock="wall") == 5.0 / 4.0
    summary = kit.summary()
    assert summary == {"cpu_min": 2000.0, "cpu_median": 3000.0, "wall_min": 5000.0, "wall_median": 9000.0,
                       "repeats": 3, "unit": "ms"}  # fmt: skip
    assert Series([Sample(1.0, 1.0)]).summary(scale=1.0)["unit"] == "s"


@pytest.mark.parametrize(
    ("target", "met", "margin"),
    [
        (Target("stream", 1.17, 1.3), True, 0.1),
        (Target("cold", 1.43, 1.3), False, -0.1),
        (Target("peer", 2.0, 1.0, at_least=True), True, 1.0),
        (Target("peer", 0.5, 1.0, at_least=True), False, -0.5),
    ],
)
def test_targets_say_met_or_missed_with_the_margin(target: Target, met: bool, margin: float) -> None:
    assert target.met is met
    assert target.margin == pytest.approx(margin)
    assert ("met" if met else "MISSED") in target.line()
    assert target.as_dict()["margin"] == pytest.approx(margin, abs=1e-3)


def test_report_targets_are_found_wherever_they_sit_and_serialised() -> None:
    a, b = Target("a", 1.0, 2.0), Target("b", 3.0, 1.0, True)
    figures = {"x": {"targets": [a]}, "container": {"targets": [b]}, "n": 1.23456789}
    assert _targets(figures) == [a, b]
    out = _jsonable(figures)
    assert out["x"]["targets"][0] == a.as_dict() and out["n"] == 1.2346
    json.dumps(out)


def test_machine_and_versions() -> None:
    m = measure.machine()
    assert m["cpus"] == os.cpu_count() and len(m["load_average"]) == 3 and m["python"]
    v = measure.versions(["pytest", "no-such-distribution-xyz"])
    assert v["pytest"] == pytest.__version__ and v["no-such-distribution-xyz"] is None


def test_chart_is_drawn_from_a_report(tmp_path: Path) -> None:
    from servingkit.bench.chart import draw

    s = {"cpu_min": 1.0, "cpu_median": 1.5, "wall_min": 2.0, "wall_median": 2.5, "repeats": 3, "unit": "ms"}
    report = {"machine": {"cpus": 2, "load_average": [1, 1, 1]}, "repeats": 3, "quick": True,
              "sections": {"stream": {"sizes": {"1000": {"kit": s, "floor": s}}},
                           "batch": {"rows": 10, "floor": s, "local": s}}}  # fmt: skip
    path = draw(report, tmp_path / "c.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_merged_reports_name_the_run_of_every_section_and_the_chart_says_so(tmp_path: Path) -> None:
    from servingkit.bench.chart import _bars, draw, merge

    s = {"cpu_min": 1.0, "cpu_median": 1.5, "wall_min": 2.0, "wall_median": 2.5, "repeats": 3, "unit": "ms"}
    met = {"name": "stream: kit / floor", "ratio": 1.2, "limit": 1.3, "at_least": False, "met": True, "margin": 0.1}
    api = {"name": "api: mlflow / kit", "ratio": 1.1, "limit": 1.0, "at_least": True, "met": True, "margin": 0.1}
    old_api = dict(api, ratio=0.6, met=False)
    full = {"created": "2026-12-01T15:16:15+00:00", "machine": {"cpus": 2, "load_average": [12.5, 1, 1]},
            "repeats": 4, "sections": {"stream": {"sizes": {"1000": {"kit": s, "floor": s}}, "targets": [met]},
                                       "api": {"configurations": {}, "targets": [old_api]}}}  # fmt: skip
    cpu = {"cpu_ms_per_request": [1.0, 2.0], "p50_ms": [3.0, 4.0]}
    new_api = {"configurations": {"kit-http keepalive x1": cpu}, "targets": [api]}
    rerun = {"created": "2026-12-01T16:07:20+00:00", "machine": {"cpus": 2, "load_average": [3.4, 1, 1]},
             "repeats": 6, "sections": {"api": new_api}}  # fmt: skip
    merged = merge([full, rerun])
    assert merged["sections"]["api"] == new_api  # the later run's section replaces the earlier
    assert merged["sources"]["stream"]["created"] == full["created"]
    assert merged["sources"]["api"] == {"created": rerun["created"], "load_average": [3.4, 1, 1], "repeats": 6}
    assert merged["targets"] == [met, api]  # the replaced section's targets are gone
    titles = [title for title, _, _ in _bars(merged)]
    assert titles[0].endswith("[run 2026-12-01 15:16 UTC, load 12.5]")
    assert titles[-1].endswith("[run 2026-12-01 16:07 UTC, load 3.4]")
    assert draw(merged, tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_negative_time_is_a_measurement_fault_not_a_minimum() -> None:
    from servingkit.bench import BenchError

    series = Series()
    with pytest.raises(BenchError, match="clock read wrong"):
        series.add(Sample(cpu=-65.8, wall=4.0))
    with pytest.raises(BenchError):
        series.add(Sample(cpu=1.0, wall=float("nan")))
    assert series.samples == []
    with pytest.raises(BenchError):
        interleave({"server": lambda: Sample(cpu=-0.1, wall=1.0)}, repeats=1, warmup=0)


def test_a_ratio_over_a_zero_baseline_meets_no_target_and_stays_strict_json() -> None:
    zero = Series([Sample(0.0, 1.0)])
    ratio = ratio_of_minima(Series([Sample(1.0, 1.0)]), zero)
    for target in (Target("peer", ratio, 1.0, at_least=True), Target("floor", ratio, 1.3)):
        assert target.met is False
        assert target.as_dict()["ratio"] is None and target.as_dict()["margin"] is None
        assert "MISSED" in target.line() and "no ratio" in target.line()
    text = measure.strict_json({"t": [Target("peer", ratio, 1.0, True)], "r": ratio, "inf": float("inf"), "ok": 1.5})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in strict JSON")) == {
        "t": [{"name": "peer", "ratio": None, "limit": 1.0, "at_least": True, "met": False, "margin": None}],
        "r": None, "inf": None, "ok": 1.5,
    }  # fmt: skip
