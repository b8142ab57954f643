"""`servingkit bench faults`: fault scenarios of the local cloud.

`servingkit demo` against a moto server child process that is paused (SIGSTOP for `pause` seconds, then
SIGCONT), stopped (SIGTERM), killed (SIGKILL) or restarted (killed, then a fresh empty instance on the same
port) while the demo produces or reads back.

For each: the demo's exit status, its ledger (in, predicted, dead-lettered, lost), duplicates, records
never acknowledged, the reason it printed, and whether any traceback appeared. Last line: one JSON object.
"""

from __future__ import annotations

import time
from typing import Any

from servingkit.localcloud.fault_injection import FAULTS, PHASES, run_demo_with_fault


def run(
    records: int = 2_000,
    rate: float = 400.0,
    pause: float = 4.0,
    faults: tuple[str, ...] = FAULTS,
    phases: tuple[str, ...] = PHASES,
) -> dict[str, Any]:
    """Every fault in `faults` while the demo is in each of `phases`; one row of figures per run."""

    results = []
    print(
        f"{'fault':8} {'while':13} {'exit':>4} {'in':>6} {'predicted':>9} {'dlq':>4} {'lost':>5} {'dups':>4} "
        f"{'unsent':>6} {'tb':>2} {'secs':>5}  reason"
    )
    for fault in faults:
        for phase in phases:
            began = time.monotonic()
            # While reading back, a 5 s batching window keeps records in flight when the fault comes.
            extra = ("-c", "batching_window_seconds=5") if phase == "reading back" else ()
            run = run_demo_with_fault(
                fault,
                phase,
                records=records,
                rate=rate,
                pause_s=pause,
                delay_s=0.3 if phase == "reading back" else 1.0,
                demo_args=extra,
            )
            f = run.figures
            row = {
                "fault": fault,
                "phase": phase,
                "exit": run.returncode,
                "records": f.get("records"),
                "predicted": f.get("predicted"),
                "dead_lettered": f.get("dead_lettered"),
                "lost": f.get("lost"),
                "duplicates": f.get("duplicates"),
                "unsent": f.get("unsent"),
                "tracebacks": run.tracebacks,
                "seconds": round(time.monotonic() - began, 1),
                "stopped": f.get("stopped"),
            }
            results.append(row)
            print(
                f"{fault:8} {phase:13} {row['exit']:>4} {row['records']:>6} {row['predicted']:>9} "
                f"{row['dead_lettered']:>4} {row['lost']:>5} {row['duplicates']:>4} {row['unsent']:>6} "
                f"{row['tracebacks']:>2} {row['seconds']:>5}  {row['stopped'] or 'complete'}",
                flush=True,
            )
    return {"records": records, "rate": rate, "pause_s": pause, "runs": results}
