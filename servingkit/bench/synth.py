"""`servingkit bench synth`: synth cost of the CDK app.

Cold and warm synth seconds, peak memory, and the infra test tier's wall time.

Cold: a fresh process imports aws_cdk and the kit's stack, synthesizes once (jsii kernel start included).
Warm: a second synth (new App, same process and jsii kernel). Peak memory: the largest summed RSS of the
process and its children (the Node.js jsii kernel), sampled from /proc. Compared in the same run with a
floor: a fresh process synthesizing a one-bucket stack (what any CDK Python app pays), and cdk-nag off.
Last line: one JSON object.
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
from typing import Any

from servingkit.bench import ROOT, BenchError
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
    """Spawn a fresh interpreter; wall seconds per phase from the child, peak tree RSS sampled by the parent."""
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
        return result


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(r[key] for r in runs), 2) for key in runs[0]}


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
    """Medians of `runs` fresh processes per configuration, and (unless `skip_tests`) the infra tier's time.
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
    for name, code, nag, node in configs:
        figures[name] = median_of([run_child(code, nag, node) for _ in range(runs)])
        f = figures[name]
        print(f"{name:16s} cold {f['cold']:6.2f} s  warm {f['warm']:6.2f} s  peak {f['peak_mb']:7.1f} MB")
    kit, floor = figures["kit"], figures["floor"]
    figures["cold_vs_floor"] = round(kit["cold"] / floor["cold"], 2)
    figures["nag_cost_cold_s"] = round(kit["cold"] - figures["kit_no_nag"]["cold"], 2)
    figures["nag_cost_warm_s"] = round(kit["warm"] - figures["kit_no_nag"]["warm"], 2)
    print(
        f"kit cold synth = {figures['cold_vs_floor']}x a one-bucket app's; cdk-nag adds "
        f"{figures['nag_cost_cold_s']} s cold, {figures['nag_cost_warm_s']} s warm (medians: noise can flip the sign)"
    )
    if "kit_system_node" in figures:
        figures["system_node_vs_wheel_cold"] = round(figures["kit_system_node"]["cold"] / kit["cold"], 2)
        figures["system_node_vs_wheel_warm"] = round(figures["kit_system_node"]["warm"] / kit["warm"], 2)
        print(
            f"jsii on the system Node vs the wheel's: cold x{figures['system_node_vs_wheel_cold']}, "
            f"warm x{figures['system_node_vs_wheel_warm']}"
        )
    if not skip_tests:
        figures["infra_tests_s"] = round(infra_tests(), 1)
        print(f"infra test tier: {figures['infra_tests_s']} s")
    return figures
