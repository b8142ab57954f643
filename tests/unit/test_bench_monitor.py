"""`servingkit bench monitor` (servingkit.bench.monitor): the window over stored profiles, timed CPU beside wall."""

from __future__ import annotations

import json

import pytest

from servingkit.bench import monitor as bench_monitor
from tests.helpers import run_cli


def test_run_merges_every_row_and_reports_cpu_beside_wall() -> None:
    figures = bench_monitor.run(rows=4000, profile_rows=500, repeats=2, seeds=3, reference_rows=3000)
    assert (figures["rows"], figures["profiles"], figures["profile_rows"]) == (4000, 8, 500)
    for name in ("window_job", "from_stored", "in_memory"):
        s = figures[name]
        assert s["repeats"] == 2 and s["unit"] == "ms"
        assert 0 < s["cpu_min"] <= s["cpu_median"] and 0 < s["wall_min"] <= s["wall_median"]
    assert figures["from_stored"]["cpu_min"] > figures["in_memory"]["cpu_min"]  # parsing is the larger part
    assert set(figures["report_bytes"]) == {"summary.json", "report.html", "report-long.html"}
    assert figures["peak_traced_mb"] > 0 and figures["stored_bytes"] > 8 * 500
    assert figures["drifted"] == []  # the serving rides are another draw of the same distribution
    fp = figures["false_positives"]
    assert fp["seeds"] == 3 and 0 <= fp["alert_rate"] <= 1
    lines = bench_monitor.table(figures).splitlines()
    assert lines[0].startswith("monitor over 4,000 captured rows (8 profiles of 500 rows")
    assert all("CPU min" in line and "wall min" in line for line in lines[1:4]) and "false positives" in lines[5]


def test_cli_prints_the_table_then_json(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    out = Path(str(tmp_path)) / "monitor.json"
    argv = ["bench", "monitor", "--rows", "2000", "--repeats", "1", "--seeds", "2", "--out", str(out)]
    assert run_cli(argv) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[0].startswith("monitor over 2,000 captured rows")
    assert json.loads(printed[-1])["rows"] == 2000 == json.loads(out.read_text())["rows"]
