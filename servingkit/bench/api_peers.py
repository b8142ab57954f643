"""The sync API against MLflow's own scoring server, on the same model and machine, in one run.

Three ways to answer one single-row `POST /invocations` (MLflow's wire format, which both servers speak):
  mlflow      `mlflow models serve -m build/model --env-manager local` (uvicorn, one worker), a child process;
  kit-http    the kit's local server (`servingkit serve`: servingkit.http_local in front of the API handler),
              a child process;
  in-process  `lambda_fn.handler.api_handler` called on a REST v1 event (what Lambda runs, without HTTP).
Each server is driven with 1 and 8 concurrent clients, on one keep-alive connection per client and on a new
connection per request. The rounds are interleaved (every configuration once, then again, `repeats` times).
Per round: p50 and p99 latency, throughput, and the server's CPU per request (its process tree, /proc), and of
that CPU how much was inside the model's `Pipeline.predict` (the same pipeline in both servers; the rest is the
server's own: HTTP, parsing, validation, encoding), read from a probe both servers load (`predict_probe`).
The target compares CPU per request, ratio of minima (servingkit.bench.measure). Both servers run as alike as
they can: one process, one OpenMP thread, warnings-level logs and no access log (the kit's `--quiet`, uvicorn's
UVICORN_ACCESS_LOG=false). Both are started here and stopped by pid.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

from servingkit.bench import ROOT, BenchError
from servingkit.bench.measure import Progress, Sample, Series, Target, interleave, ratio_of_minima, tree_cpu_seconds

MODES = (("keepalive", 1), ("keepalive", 8), ("new-connection", 1), ("new-connection", 8))
PROBE = Path(__file__).with_name("predict_probe")
"""The directory of the `sitecustomize` that counts CPU inside `Pipeline.predict`, first on both servers' path."""


def predict_totals(directory: Path) -> tuple[int, float]:
    """Calls and CPU seconds in `Pipeline.predict`, summed over the processes that wrote to `directory`."""
    calls, seconds = 0, 0.0
    for path in directory.iterdir():
        n, cpu = struct.unpack("<qd", path.read_bytes()[:16])
        calls, seconds = calls + n, seconds + cpu
    return calls, seconds


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _server(cmd: list[str], probe: str, env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server child, wait until `probe` answers 200 (model loaded), stop it by pid at the end."""
    log = (ROOT / "build" / f"bench-server-{port}.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise BenchError(f"{cmd[0]} server exited ({proc.returncode}); its log: {log.name}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", probe)
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"{' '.join(cmd[:4])} did not answer {probe} within 180 s; its log: {log.name}")
            time.sleep(0.3)
        yield proc
    finally:
        # Its own session (start_new_session): the group is the server and the workers it started, nothing else.
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _load(port: int, body: bytes, mode: str, clients: int, per_client: int) -> tuple[list[float], float, int]:
    """Every client sends `per_client` requests; (latencies ms, elapsed s, errors)."""
    headers = {"Content-Type": "application/json"}
    if mode == "new-connection":
        headers["Connection"] = "close"
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    gate = threading.Barrier(clients + 1)

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        gate.wait()
        for _ in range(per_client):
            started = time.perf_counter()
            if mode == "new-connection":
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("POST", "/invocations", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            latencies[k].append((time.perf_counter() - started) * 1000)
            errors[k] += response.status != 200
            if mode == "new-connection":
                conn.close()
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    began = time.perf_counter()
    gate.wait()
    for t in threads:
        t.join()
    return [x for per in latencies for x in per], time.perf_counter() - began, sum(errors)


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _min_median(values: list[float]) -> list[float]:
    return [round(min(values), 3), round(statistics.median(values), 3)]


class _Rounds:
    """Per-round p50 / p99 / throughput of one configuration, next to its CPU Series."""

    def __init__(self) -> None:
        self.p50: list[float] = []
        self.p99: list[float] = []
        self.rps: list[float] = []
        self.errors = 0
        self.predict: list[tuple[int, float, float]] = []  # per round: predict calls, CPU in predict, CPU in all

    def add(self, latencies: list[float], elapsed: float, errors: int) -> None:
        self.p50.append(statistics.median(latencies))
        self.p99.append(_pct(latencies, 0.99))
        self.rps.append(len(latencies) / elapsed)
        self.errors += errors

    def summary(self, cpu: Series, requests: int) -> dict[str, Any]:
        figures: dict[str, Any] = {
            "p50_ms": [round(min(self.p50), 2), round(statistics.median(self.p50), 2)],
            "p99_ms": [round(min(self.p99), 2), round(statistics.median(self.p99), 2)],
            "rps": [round(max(self.rps), 1), round(statistics.median(self.rps), 1)],
            "cpu_ms_per_request": [round(cpu.cpu_min * 1000 / requests, 3), round(cpu.cpu_median * 1000 / requests, 3)],
            "errors": self.errors,
        }
        if self.predict:
            inside = [p * 1000 / requests for _, p, _ in self.predict]
            outside = [(total - p) * 1000 / requests for _, p, total in self.predict]
            figures["predict_cpu_ms_per_request"] = _min_median(inside)
            figures["outside_predict_cpu_ms_per_request"] = _min_median(outside)
            calls = sum(n for n, _, _ in self.predict)
            figures["predicts_per_request"] = round(calls / len(self.predict) / requests, 3)
        return figures


def _in_process_call() -> Callable[[], None]:
    from lambda_fn.handler import api_handler
    from servingkit.http_local import api_context, build_event

    body = _body()
    event = build_event("POST", "/invocations", [("Content-Type", "application/json")], body)
    ctx = api_context()

    def call() -> None:
        result = api_handler(event, ctx)
        assert result["statusCode"] == 200, result["body"]

    return call


def _body() -> bytes:
    from lambda_fn.hooks import taxi_features
    from servingkit.taxi import ride_events

    row = taxi_features([next(iter(ride_events(1, seed=7)))["ride"]])[0]
    return json.dumps({"dataframe_records": [row]}).encode()


def run(repeats: int = 3, requests: int = 200, peers: bool = True, progress: Progress | None = None) -> dict[str, Any]:
    """Every figure of the module's docstring; `requests` per configuration and round (split among clients);
    `peers=False` leaves MLflow's server out (the smoke run: it takes tens of seconds to start).
    Raises MissingModelError when the demo model is not trained, BenchError when a server will not start."""
    from servingkit.http_local import demo_environment
    from servingkit.train import demo_artifact

    model_dir, _ = demo_artifact()
    env = {**os.environ, **demo_environment(), "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{PROBE}{os.pathsep}{ROOT}",
           "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
           "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "WARNING"}  # fmt: skip
    # The in-process handler runs as the servers do: metrics off (else it prints an EMF line per request) and
    # warnings only, whichever section ran before this one in the process (`--section api` alone included).
    same = ("OMP_NUM_THREADS", "POWERTOOLS_METRICS_DISABLED", "POWERTOOLS_LOG_LEVEL")
    os.environ.update({k: env[k] for k in (*demo_environment(), *same)})
    body = _body()
    ports = {"mlflow": _free_port(), "kit-http": _free_port()}
    mlflow_cmd = [str(ROOT / ".venv" / "bin" / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager",
                  "local", "--host", "127.0.0.1", "--port", str(ports["mlflow"]), "--workers", "1"]  # fmt: skip
    kit_cmd = [sys.executable, "-m", "servingkit", "serve", "--port", str(ports["kit-http"]), "--quiet"]
    rounds: dict[str, _Rounds] = {}
    servers = ("mlflow", "kit-http") if peers else ("kit-http",)
    probes = {server: ROOT / "build" / "bench-probe" / server for server in servers}
    for directory in probes.values():
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
    envs = {server: {**env, "SERVINGKIT_PREDICT_PROBE": str(probes[server])} for server in servers}
    envs["mlflow"] = {**envs.get("mlflow", env), "UVICORN_ACCESS_LOG": "false"}  # uvicorn reads UVICORN_<OPTION>
    with ExitStack() as stack:
        pids = {"kit-http": stack.enter_context(_server(kit_cmd, "/health", envs["kit-http"], ports["kit-http"])).pid}
        if peers:
            pids["mlflow"] = stack.enter_context(_server(mlflow_cmd, "/ping", envs["mlflow"], ports["mlflow"])).pid
        in_process = _in_process_call()
        # One OpenMP thread in this process too, as in the servers (OMP_NUM_THREADS=1) and as deployed: numpy and
        # scikit-learn may be loaded already (an earlier section), when the variable no longer takes effect.
        from threadpoolctl import threadpool_limits

        stack.enter_context(threadpool_limits(limits=1, user_api="openmp"))
        runs: dict[str, Callable[[], Sample | None]] = {}
        for mode, clients in MODES:
            for server in servers:
                name = f"{server} {mode} x{clients}"
                rounds[name] = _Rounds()

                def one(server: str = server, mode: str = mode, clients: int = clients, name: str = name) -> Sample:
                    before, (calls, inside) = tree_cpu_seconds(pids[server]), predict_totals(probes[server])
                    lat, elapsed, errors = _load(ports[server], body, mode, clients, max(1, requests // clients))
                    cpu = tree_cpu_seconds(pids[server]) - before
                    after_calls, after_inside = predict_totals(probes[server])
                    rounds[name].add(lat, elapsed, errors)
                    rounds[name].predict.append((after_calls - calls, after_inside - inside, cpu))
                    return Sample(cpu, elapsed)

                runs[name] = one
        rounds["in-process"] = _Rounds()

        def direct() -> None:
            lat = []
            for _ in range(requests):
                t = time.perf_counter()
                in_process()
                lat.append((time.perf_counter() - t) * 1000)
            rounds["in-process"].add(lat, sum(lat) / 1000, 0)

        runs["in-process"] = direct
        series = interleave(runs, repeats, progress=progress)
    for r in rounds.values():  # the warm-up round is not a measurement
        for values in (r.p50, r.p99, r.rps, r.predict):
            if values:
                del values[0]
    figures: dict[str, Any] = {"repeats": repeats, "requests": requests, "configurations": {}}
    targets: list[Target] = []
    for name, r in rounds.items():
        clients = 1 if name == "in-process" else int(name.rsplit("x", 1)[1])
        figures["configurations"][name] = r.summary(series[name], max(1, requests // clients) * clients)
    for mode, clients in MODES if peers else ():
        kit, peer = series[f"kit-http {mode} x{clients}"], series[f"mlflow {mode} x{clients}"]
        targets.append(Target(f"api: mlflow / kit server CPU per request, {mode} x{clients}",
                              ratio_of_minima(peer, kit), 1.0, True))  # fmt: skip
        kit_p50 = min(rounds[f"kit-http {mode} x{clients}"].p50)
        peer_p50 = min(rounds[f"mlflow {mode} x{clients}"].p50)
        targets.append(Target(f"api: mlflow / kit p50 latency, {mode} x{clients}", peer_p50 / kit_p50, 1.0, True))
    figures["targets"] = targets
    _print(figures)
    return figures


def _print(figures: dict[str, Any]) -> None:
    print(f"\n{'single-row POST /invocations':34}{'p50 ms min/med':>16}{'p99 ms min/med':>17}{'req/s max/med':>16}"
          f"{'CPU ms/req min/med':>20}{'outside predict':>17}{'errors':>7}")  # fmt: skip
    for name, c in figures["configurations"].items():
        outside = c.get("outside_predict_cpu_ms_per_request")
        own = f"{outside[0]:>8.2f}/{outside[1]:<8.2f}" if outside else f"{'-':>17}"
        print(f"{name:34}{c['p50_ms'][0]:>8.2f}/{c['p50_ms'][1]:<7.2f}{c['p99_ms'][0]:>9.2f}/{c['p99_ms'][1]:<7.2f}"
              f"{c['rps'][0]:>8.1f}/{c['rps'][1]:<7.1f}{c['cpu_ms_per_request'][0]:>10.2f}/"
              f"{c['cpu_ms_per_request'][1]:<9.2f}{own}{c['errors']:>7}")  # fmt: skip
