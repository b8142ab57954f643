"""`servingkit bench api`: sync API figures, each against a baseline measured in the same run.

1. Latency in-process: a single-row request through `lambda_fn.handler.api_handler` (REST v1 event,
   Powertools logger and metrics decorators included), for /invocations (model columns) and /predict
   (raw ride + feature hook), p50/p99 next to the floor: one `predict` call on one prepared row.
2. Throughput over HTTP: the local server (servingkit.http_local) with N concurrent clients for a bounded
   time: requests/s, p50/p99 and the error count.
3. Cold start (`--cold-start`): fresh process, import + first request on a route without the model, for
   the Powertools router used here and, when `mangum` is importable (`--mangum-path`), FastAPI + Mangum
   on the same core. Model loading is the same for both, so it is left out to compare the routers.

The last line is one JSON object with every figure.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from servingkit.bench import ROOT, BenchError

os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
# One OpenMP thread (set before numpy/sklearn load): a single-row predict gains nothing from more, and on a
# shared or small machine (a Lambda below 1,769 MB has under one vCPU) OpenMP's spinning threads cost
# several times the work. The floor and the handler run with the same setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# With metrics disabled Powertools warns on every flush that nothing was published: noise, not news.
warnings.filterwarnings("ignore", message="No application metrics to publish")


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _interleaved(fns: list[Callable[[], Any]], n: int, warmup: int = 30) -> list[list[float]]:
    """Milliseconds of n calls of each function, taking turns."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    out: list[list[float]] = [[] for _ in fns]
    for _ in range(n):
        for samples, fn in zip(out, fns, strict=True):
            start = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - start) * 1000)
    return out


def in_process(n: int) -> dict[str, Any]:
    from lambda_fn import runtime
    from lambda_fn.config import get_settings
    from lambda_fn.handler import api_handler
    from lambda_fn.hooks import taxi_features
    from lambda_fn.schema import validate
    from servingkit.http_local import api_context, build_event
    from servingkit.taxi import ride_events

    ride = next(iter(ride_events(1, seed=7)))
    row = taxi_features([ride["ride"]])[0]
    model = runtime.get_model(get_settings())
    frame = validate([row], model.signature).frame  # prepared once: the floor pays no parsing
    headers = [("Content-Type", "application/json")]
    inv = build_event("POST", "/invocations", headers, json.dumps({"dataframe_records": [row]}).encode())
    pred = build_event("POST", "/predict", headers, json.dumps(ride).encode())
    ctx = api_context()
    for event in (inv, pred):
        result = api_handler(event, ctx)
        assert result["statusCode"] == 200, result["body"]

    # Interleaved, so a busy neighbour slows the floor and the handler alike.
    floor, invocations, predict = _interleaved(
        [lambda: model.predict(frame), lambda: api_handler(inv, ctx), lambda: api_handler(pred, ctx)], n
    )
    f50 = statistics.median(floor)
    out: dict[str, Any] = {"requests": n, "floor_p50_ms": round(f50, 3), "floor_p99_ms": round(_pct(floor, 0.99), 3)}
    print(f"\nsingle-row request in-process ({n} each)   p50 ms   p99 ms   p50 / floor")
    print(f"  {'floor: one predict, prepared row':38}{f50:>8.3f}{_pct(floor, 0.99):>9.3f}{1:>13.2f}")
    for name, samples in (("invocations", invocations), ("predict", predict)):
        p50, p99 = statistics.median(samples), _pct(samples, 0.99)
        print(f"  {'POST /' + name + ' via api_handler':38}{p50:>8.3f}{p99:>9.3f}{p50 / f50:>13.2f}")
        out[f"{name}_p50_ms"] = round(p50, 3)
        out[f"{name}_p99_ms"] = round(p99, 3)
        out[f"{name}_p50_ratio"] = round(p50 / f50, 2)
    out["target_p50_within_3x_met"] = bool(max(out["invocations_p50_ratio"], out["predict_p50_ratio"]) <= 3)
    return out


def over_http(clients: int, seconds: float) -> dict[str, Any]:
    import requests

    from servingkit.http_local import serving
    from servingkit.taxi import ride_events

    rides = list(ride_events(256, seed=11))
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    with serving() as url:
        assert requests.get(f"{url}/health", timeout=60).status_code == 200  # model loaded before timing
        start_gate = threading.Barrier(clients + 1)
        deadline = [0.0]

        def client(k: int) -> None:
            with requests.Session() as session:
                start_gate.wait()
                i = k
                while time.perf_counter() < deadline[0]:
                    started = time.perf_counter()
                    r = session.post(f"{url}/predict", json=rides[i % len(rides)], timeout=30)
                    latencies[k].append((time.perf_counter() - started) * 1000)
                    if r.status_code != 200:
                        errors[k] += 1
                    i += clients

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        deadline[0] = time.perf_counter() + seconds
        began = time.perf_counter()
        start_gate.wait()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - began
    samples = [x for per in latencies for x in per]
    rps = len(samples) / elapsed
    p50, p99 = statistics.median(samples), _pct(samples, 0.99)
    print(f"\nHTTP /predict, {clients} concurrent clients for {seconds:.0f} s (local server, one container)")
    print(
        f"  requests {len(samples)}  throughput {rps:.0f} req/s  p50 {p50:.2f} ms  p99 {p99:.2f} ms  "
        f"errors {sum(errors)}"
    )
    return {
        "http_clients": clients,
        "http_seconds": round(elapsed, 2),
        "http_requests": len(samples),
        "http_rps": round(rps, 1),
        "http_p50_ms": round(p50, 2),
        "http_p99_ms": round(p99, 2),
        "http_errors": sum(errors),
    }


EVENT = (
    '{"resource": "/{proxy+}", "path": "/v2/health/live", "httpMethod": "GET", "headers": {}, '
    '"multiValueHeaders": {}, "queryStringParameters": null, "multiValueQueryStringParameters": null, '
    '"pathParameters": null, "stageVariables": null, "requestContext": {"requestId": "r", "stage": "$default", '
    '"path": "/v2/health/live", "httpMethod": "GET", "resourcePath": "/{proxy+}", "identity": {}}, '
    '"body": null, "isBase64Encoded": false}'
)
POWERTOOLS_CHILD = (
    "import json, time; t = time.perf_counter()\n"
    "from lambda_fn.handler import api_handler\n"
    "from servingkit.http_local import api_context\n"
    f"r = api_handler(json.loads({EVENT!r}), api_context())\n"
    "assert r['statusCode'] == 200, r\n"
    "print(time.perf_counter() - t)\n"
)
# The same entry module and core imported, the same route answered, through FastAPI behind Mangum instead
# of lambda_fn.api's Powertools resolvers.
FASTAPI_CHILD = (
    "import json, time; t = time.perf_counter()\n"
    "import lambda_fn.handler, lambda_fn.api.inputs  # logger, metrics, runtime, scoring: as in the kit\n"
    "from fastapi import FastAPI\n"
    "from mangum import Mangum\n"
    "from pydantic import BaseModel\n"
    "class Rows(BaseModel):\n"
    "    dataframe_records: list[dict] | None = None\n"
    "app = FastAPI()\n"
    "@app.get('/v2/health/live')\n"
    "def live() -> dict:\n"
    "    return {'live': True}\n"
    "@app.post('/invocations')\n"
    "def invocations(body: Rows) -> dict:\n"
    "    return {'predictions': []}\n"
    "handler = Mangum(app, lifespan='off')\n"
    "from servingkit.http_local import api_context\n"
    f"r = handler(json.loads({EVENT!r}), api_context())\n"
    "assert r['statusCode'] == 200, r\n"
    "print(time.perf_counter() - t)\n"
)


def _spawn(code: str, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds spawn→exit, and the child's own import + first-request seconds."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise BenchError(f"child failed:\n{out.stderr[-3000:]}")
    return wall, float(out.stdout.strip().splitlines()[-1])


def measure_cold_start(runs: int, mangum_path: str | None) -> dict[str, Any]:
    base = dict(os.environ)
    variants = {"powertools": (POWERTOOLS_CHILD, base)}
    try:
        import fastapi  # noqa: F401

        if mangum_path:
            variants["fastapi_mangum"] = (FASTAPI_CHILD, dict(base, PYTHONPATH=mangum_path))
        else:
            import mangum  # noqa: F401

            variants["fastapi_mangum"] = (FASTAPI_CHILD, base)
    except ImportError:
        print("FastAPI + Mangum not importable: cold start measured for Powertools only")
    bare = _spawn("print(0.0)", base)  # interpreter start-up, for reference
    out: dict[str, Any] = {"cold_runs": runs, "cold_interpreter_s": round(bare[0], 3)}
    print(f"\ncold start: fresh process, import + first request, median of {runs}   wall s   import+request s")
    print(f"  {'bare interpreter':42}{bare[0]:>7.3f}")
    for name, (code, env) in variants.items():
        samples = [_spawn(code, env) for _ in range(runs)]
        wall = statistics.median(s[0] for s in samples)
        inner = statistics.median(s[1] for s in samples)
        print(f"  {name:42}{wall:>7.3f}{inner:>13.3f}")
        out[f"cold_{name}_wall_s"] = round(wall, 3)
        out[f"cold_{name}_import_request_s"] = round(inner, 3)
    if "cold_fastapi_mangum_wall_s" in out:
        ratio = out["cold_fastapi_mangum_import_request_s"] / out["cold_powertools_import_request_s"]
        out["cold_fastapi_over_powertools"] = round(ratio, 2)
        print(f"  FastAPI + Mangum / Powertools (import + request): {ratio:.2f}x")
    return out


def run(
    requests: int = 1000,
    clients: int = 8,
    seconds: float = 10.0,
    cold_start: bool = False,
    cold_runs: int = 5,
    mangum_path: str | None = None,
) -> dict[str, Any]:
    """Every figure of the module's docstring. Raises MissingModelError when the demo model is not trained,
    BenchError when a cold-start child fails."""
    from servingkit.http_local import demo_environment

    os.environ.update(demo_environment())
    print(
        f"model {os.environ['MODEL_URI']} (pinned sha256), Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, load average {os.getloadavg()[0]:.1f}"
    )
    results: dict[str, Any] = {"omp_threads": os.environ["OMP_NUM_THREADS"], "load_average": os.getloadavg()[0]}
    results.update(in_process(requests))
    results.update(over_http(clients, seconds))
    if cold_start:
        results.update(measure_cold_start(cold_runs, mangum_path))
    return results
