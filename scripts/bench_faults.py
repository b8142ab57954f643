#!/usr/bin/env python3
"""Fault scenarios of the local cloud: `scripts/demo.py` against a moto server child process that is paused
(SIGSTOP for --pause seconds, then SIGCONT), stopped (SIGTERM), killed (SIGKILL) or restarted (killed, then
a fresh empty instance on the same port) while the demo produces or reads back.

For each: the demo's exit status, its ledger (in, predicted, dead-lettered, lost), duplicates, records
never acknowledged, the reason it printed, and whether any traceback appeared. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from servingkit.localcloud.faults import FAULTS, PHASES, run_demo_with_fault


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=400.0, help="producer pace, records/s")
    parser.add_argument("--pause", type=float, default=4.0, help="seconds the emulator stays paused")
    parser.add_argument("--faults", nargs="+", choices=FAULTS, default=list(FAULTS))
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    args = parser.parse_args()

    results = []
    print(
        f"{'fault':8} {'while':13} {'exit':>4} {'in':>6} {'predicted':>9} {'dlq':>4} {'lost':>5} {'dups':>4} "
        f"{'unsent':>6} {'tb':>2} {'secs':>5}  reason"
    )
    for fault in args.faults:
        for phase in args.phases:
            began = time.monotonic()
            # While reading back, a 5 s batching window keeps records in flight when the fault comes.
            extra = ("-c", "batching_window_seconds=5") if phase == "reading back" else ()
            run = run_demo_with_fault(
                fault,
                phase,
                records=args.records,
                rate=args.rate,
                pause_s=args.pause,
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
    print(json.dumps({"records": args.records, "rate": args.rate, "pause_s": args.pause, "runs": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
