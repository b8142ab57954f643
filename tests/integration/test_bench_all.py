"""`servingkit bench all --quick`: the smoke run writes the JSON of the documented schema and the PNG chart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

BUDGET_S = 600.0  # a bound on a hang, not a benchmark: the machine may be shared


@pytest.fixture(scope="module", autouse=True)
def demo_model() -> None:
    """The benchmarks measure the demo model; train it once if `make model` has not run."""
    if (ROOT / "build" / "model" / "MLmodel").is_file() and (ROOT / "build" / "release.json").is_file():
        return
    done = subprocess.run([sys.executable, "-m", "servingkit", "train"], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"servingkit train failed ({done.returncode}):\n{done.stderr[-2000:]}", pytrace=False)


def _not_json(constant: str) -> None:
    pytest.fail(f"{constant} in the bench's JSON: not strict JSON (RFC 8259)", pytrace=False)


def test_quick_run_writes_every_section_and_the_chart(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "servingkit", "bench", "all", "--quick", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=BUDGET_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text(), parse_constant=_not_json)  # strict JSON: no NaN / Infinity
    assert report["schema"] == "servingkit-bench/1" and report["quick"] is True
    assert report["machine"]["cpus"] == os.cpu_count() and report["versions"]["mlflow"]
    sections = report["sections"]
    assert set(sections) == {"stream", "coldstart", "api", "batch", "single_row"}
    for figures in (
        sections["stream"]["sizes"]["1000"]["kit"],
        sections["coldstart"]["kit"],
        sections["batch"]["local"],
    ):
        assert 0 < figures["cpu_min"] <= figures["cpu_median"] and 0 < figures["wall_min"] <= figures["wall_median"]
    assert sections["coldstart"]["container"] == {"skipped": "--quick"}
    assert sections["api"]["configurations"]["kit-http keepalive x8"]["errors"] == 0
    assert sections["single_row"]["mismatches"] == 0
    names = [t["name"] for t in report["targets"]]
    assert any(n.startswith("cold start") for n in names) and any(n.startswith("batch: local") for n in names)
    assert all({"ratio", "limit", "met", "margin"} <= set(t) for t in report["targets"])
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    access_log = [line for line in done.stderr.splitlines() if '" 200 -' in line or 'HTTP/1.1" ' in line]
    assert not access_log, f"the emulator's access log reached the terminal: {access_log[:3]}"
    last = json.loads(done.stdout.strip().splitlines()[-1], parse_constant=_not_json)
    assert "target" in done.stdout and last["out"] == str(out)
    for t in report["targets"]:  # every server sample was a time, never a negative one
        assert t["ratio"] is None or t["ratio"] > 0, t
