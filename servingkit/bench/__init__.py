"""The benchmarks behind `servingkit bench`: one module per benchmark, each with a `run(...)` that prints
its table and returns its figures (the command prints them as the last line, one JSON object).

Each compares the kit with a floor measured in the same run. `ROOT` is the project directory: the demo
model (build/model) and the benchmarks' scratch files live under its build/.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# `servingkit bench all` (`make bench`) is servingkit.bench.suite: every comparison measured by
# servingkit.bench.measure, one JSON file and one chart.


class BenchError(RuntimeError):
    """A benchmark could not measure (a child process failed, an input is missing); the message says why."""
