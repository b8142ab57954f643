"""The demo when its emulator dies for real: a moto server child process paused, killed or restarted mid-run.

Whatever happens, the demo ends with its ledger and a one-line reason (never a traceback), its ledger
adds up (every acknowledged record is predicted, dead-lettered, skipped or counted lost), and it exits
non-zero exactly when something is unaccounted for. A pause shorter than the grace period loses nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from servingkit.localcloud.fault_injection import FaultRun, run_demo_with_fault
from tests.conftest import ROOT

# (fault, phase, extra demo arguments): a long batching window keeps records in flight while reading back.
SCENARIOS = [
    ("kill", "producing", ()),
    ("kill", "reading back", ("-c", "batching_window_seconds=5")),
    ("restart", "producing", ()),
    ("pause", "producing", ()),
]


def _check_ledger(run: FaultRun) -> None:
    f = run.figures
    assert run.tracebacks == 0, "\n".join(run.lines[-40:])
    assert f, "the last line must be the JSON figures:\n" + "\n".join(run.lines[-20:])
    assert f["records"] == f["predicted"] + f["dead_lettered"] + f["skipped_on_failure"] + f["lost"], f
    ledger = [line for line in run.lines if line.startswith("ledger: ")]
    assert ledger == [
        f"ledger: {f['records']:,} in, {f['predicted']:,} predicted, {f['dead_lettered']:,} dead-lettered, "
        f"{f['lost']:,} lost"
    ]
    unaccounted = bool(f["lost"] or f["stopped"])
    assert (run.returncode != 0) == unaccounted and run.returncode in (0, 1), (run.returncode, f)
    assert f["ok"] is not unaccounted


@pytest.mark.parametrize(("fault", "phase", "args"), SCENARIOS, ids=[f"{f} while {p}" for f, p, _ in SCENARIOS])
def test_the_demo_accounts_for_every_record_when_its_emulator_dies(
    release: tuple[Path, Path], fault: str, phase: str, args: tuple[str, ...]
) -> None:
    demo_args = ("--model-dir", str(release[0]), "--release", str(release[1]), *args)
    run = run_demo_with_fault(
        fault,
        phase,
        records=1_500,
        rate=400,
        delay_s=0.3 if phase == "reading back" else 1.0,
        demo_args=demo_args,
        root=ROOT,
    )
    _check_ledger(run)
    f = run.figures
    if fault == "pause":
        assert run.returncode == 0 and f["lost"] == 0 and f["stopped"] is None, "\n".join(run.lines[-30:])
        return
    assert run.returncode == 1
    stopped = [line for line in run.lines if line.startswith("STOPPED: ")]
    assert len(stopped) == 1 and f"while {phase}" in stopped[0], stopped
    assert ("restarted" if fault == "restart" else "stopped answering") in stopped[0]
    if phase == "producing":
        assert f["unsent"] > 0  # the producer stopped, and says how many it never had acknowledged
