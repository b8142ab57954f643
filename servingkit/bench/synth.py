"""`servingkit bench synth`: synth cost of the CDK app.

Cold and warm synth seconds, peak memory, and the infra test tier's wall time.

Cold: a fresh process imports aws_cdk and the kit's stack, synthesizes once (jsii kernel start included).
Warm: a second synth (new App, same process and jsii kernel). Peak memory: the largest summed RSS of the
process and its children (the Node.js jsii kernel), sampled from /proc. Compared in the same run with a
floor: a fresh process synthesizing a one-bucket stack (what any CDK Python app pays), and cdk-nag off.
Measured the one way (servingkit.bench.measure): the configurations' fresh processes interleaved, each process's
CPU from wait4 (the jsii kernel it reaped included) beside its wall time, and the child's cold and warm phase
seconds, min and median; the kit-vs-floor ratio is CPU of minima. Last line: one JSON object.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from servingkit.bench import ROOT, BenchError
from servingkit.bench.measure import Sample, interleave, ratio_of_minima
from servingkit.bench.util import run_sampled

CONTEXT = {"model_uri": "s3://example-models/taxi/1", "model_sha256": "0" * 64}

KIT_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from infra.stack import build_app
ctx, nag, out = json.loads(sys.argv[1]), sys.argv[2] == "1", sys.argv[3]
build_app(ctx, nag=nag, outdir=out + "/cold").synth()
t1 = time.perf_counter()
build_app(ctx, nag=nag, outdir=out + "/warm").synth()
t2 = time.perf_counter()
print(json.dumps({"cold": t1 - t0, "warm": t2 - t1}))
"""

FLOOR_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
def synth(out):
    app = cdk.App(outdir=out)
    s3.Bucket(cdk.Stack(app, "Floor"), "Bucket")
    app.synth()
synth(sys.argv[3] + "/cold")
t1 = time.perf_counter()
synth(sys.argv[3] + "/warm")
t2 = time.perf_counter()
print(json.dumps({"cold": t1 - t0, "warm": t2 - t1}))
"""


def run_child(code: str, nag: bool, node: str | None = None) -> dict[str, float]:
    """Spawn a fresh interpreter; wall seconds per phase from the child, peak tree RSS sampled by the parent,
    the process's CPU (wait4) and wall seconds."""
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as out:
        env = dict(os.environ)
        if node:
            env["JSII_NODE"] = node
            env["JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION"] = "1"
        run = run_sampled([sys.executable, "-c", code, json.dumps(CONTEXT), "1" if nag else "0", out], env, cwd=ROOT)
        if run.returncode != 0:
            raise BenchError(f"synth child failed:\n{run.stderr[-3000:]}")
        result: dict[str, float] = json.loads(run.stdout.strip().splitlines()[-1])
        result["peak_mb"] = run.peak_kb / 1024
        result["cpu"] = run.rusage.ru_utime + run.rusage.ru_stime
        result["process"] = run.seconds
        return result


def min_median_of(runs: list[dict[str, float]]) -> dict[str, list[float]]:
    """[min, median] of each figure over the runs."""
    return {key: [round(min(r[key] for r in runs), 2), round(statistics.median(r[key] for r in runs), 2)]
            for key in runs[0]}  # fmt: skip


def infra_tests() -> float:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/infra", "-m", "infra", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise BenchError(f"infra tests failed:\n{result.stdout[-3000:]}")
    print(result.stdout.strip().splitlines()[-1])
    return seconds


def run(runs: int = 3, skip_tests: bool = False) -> dict[str, Any]:
    """Min and median of `runs` interleaved fresh processes per configuration, and (unless `skip_tests`) the infra
    tier's time.
    Raises BenchError when a child or the infra tests fail."""
    from infra.node import prefer_wheel_node

    prefer_wheel_node()
    figures: dict[str, Any] = {"node": os.environ.get("JSII_NODE", "node"), "runs": runs}
    configs: list[tuple[str, str, bool, str | None]] = [
        ("floor", FLOOR_CHILD, False, None),
        ("kit_no_nag", KIT_CHILD, False, None),
        ("kit", KIT_CHILD, True, None),
    ]
    system_node = shutil.which("node")
    if system_node and system_node != figures["node"]:
        configs.append(("kit_system_node", KIT_CHILD, True, system_node))
    samples: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in configs}
    calls: dict[str, Callable[[], Sample | None]] = {}
    for name, code, nag, node in configs:

        def one(name: str = name, code: str = code, nag: bool = nag, node: str | None = node) -> Sample:
            result = run_child(code, nag, node)
            samples[name].append(result)
            return Sample(result["cpu"], result["process"])

        calls[name] = one
    series = interleave(calls, runs, warmup=0, progress=lambda line: print(line, file=sys.stderr, flush=True))
    for name in calls:
        figures[name] = f = min_median_of(samples[name])
        cpu, cold, warm = f["cpu"], f["cold"], f["warm"]
        print(f"{name:16s} CPU {cpu[0]:6.2f}/{cpu[1]:<6.2f} s  cold {cold[0]:6.2f}/{cold[1]:<6.2f} s"
              f"  warm {warm[0]:5.2f}/{warm[1]:<5.2f} s  peak {f['peak_mb'][1]:7.1f} MB (min/median)")  # fmt: skip
    kit, floor = figures["kit"], figures["floor"]
    figures["cpu_vs_floor"] = round(ratio_of_minima(series["kit"], series["floor"]), 2)
    figures["cold_vs_floor"] = round(kit["cold"][0] / floor["cold"][0], 2)
    figures["nag_cost_cpu_s"] = round(kit["cpu"][0] - figures["kit_no_nag"]["cpu"][0], 2)
    figures["nag_cost_cold_s"] = round(kit["cold"][0] - figures["kit_no_nag"]["cold"][0], 2)
    figures["nag_cost_warm_s"] = round(kit["warm"][0] - figures["kit_no_nag"]["warm"][0], 2)
    print(
        f"kit synth = {figures['cpu_vs_floor']}x a one-bucket app's CPU ({figures['cold_vs_floor']}x its cold wall); "
        f"cdk-nag adds {figures['nag_cost_cpu_s']} s CPU, {figures['nag_cost_cold_s']} s cold, "
        f"{figures['nag_cost_warm_s']} s warm (minima)"
    )
    if "kit_system_node" in figures:
        figures["system_node_vs_wheel_cold"] = round(figures["kit_system_node"]["cold"][0] / kit["cold"][0], 2)
        figures["system_node_vs_wheel_warm"] = round(figures["kit_system_node"]["warm"][0] / kit["warm"][0], 2)
        print(
            f"jsii on the system Node vs the wheel's: cold x{figures['system_node_vs_wheel_cold']}, "
            f"warm x{figures['system_node_vs_wheel_warm']}"
        )
    if not skip_tests:
        figures["infra_tests_s"] = round(infra_tests(), 1)
        print(f"infra test tier: {figures['infra_tests_s']} s")
    return figures
