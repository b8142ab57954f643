"""`servingkit bench api --cold-start`: router cold start, the Powertools resolvers vs FastAPI + Mangum.

A fresh process imports the entry module and answers one request on a route without the model
(`GET /v2/health/live`), through lambda_fn.api's Powertools resolvers or through FastAPI behind Mangum on the
same core. Model loading is the same for both, so it is left out to compare the routers. Measured the one way
(servingkit.bench.measure): fresh processes interleaved, the child's CPU from wait4 beside wall spawn to exit,
min and median; the ratio is CPU of minima. A bare interpreter is measured alongside, for reference.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

from servingkit.bench import ROOT, BenchError
from servingkit.bench.measure import Sample, interleave, ratio_of_minima
from servingkit.bench.util import run_sampled

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


def _child(code: str, env: dict[str, str]) -> Sample:
    run = run_sampled([sys.executable, "-c", code], env, cwd=ROOT, interval=None)
    if run.returncode != 0:
        raise BenchError(f"child failed ({run.returncode}):\n{run.stderr[-3000:]}")
    return Sample(run.rusage.ru_utime + run.rusage.ru_stime, run.seconds)


def _variants(mangum_path: str | None) -> dict[str, tuple[str, dict[str, str]]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "POWERTOOLS_METRICS_DISABLED": "true"}
    variants = {"bare interpreter": ("pass", env), "powertools": (POWERTOOLS_CHILD, env)}
    try:
        import fastapi  # noqa: F401

        if mangum_path:
            variants["fastapi_mangum"] = (FASTAPI_CHILD, dict(env, PYTHONPATH=f"{ROOT}{os.pathsep}{mangum_path}"))
        else:
            import mangum  # noqa: F401

            variants["fastapi_mangum"] = (FASTAPI_CHILD, env)
    except ImportError:
        print("FastAPI + Mangum not importable: cold start measured for Powertools only", file=sys.stderr)
    return variants


def run(runs: int = 5, mangum_path: str | None = None) -> dict[str, Any]:
    """`runs` interleaved fresh processes of each router (and a bare interpreter): CPU and wall, min and median.
    Raises BenchError when a child fails."""
    calls: dict[str, Callable[[], Sample | None]] = {
        name: partial(_child, code, env) for name, (code, env) in _variants(mangum_path).items()
    }
    series = interleave(calls, runs, warmup=0, progress=lambda line: print(line, file=sys.stderr, flush=True))
    figures: dict[str, Any] = {"runs": runs} | {name: s.summary(scale=1.0) for name, s in series.items()}
    print(f"\n{'router cold start, s':24}{'cpu min':>9}{'median':>9}{'wall min':>9}{'median':>9}")
    for name, s in series.items():
        print(f"{name:24}{s.cpu_min:>9.3f}{s.cpu_median:>9.3f}{s.wall_min:>9.3f}{s.wall_median:>9.3f}")
    if "fastapi_mangum" in series:
        ratio = ratio_of_minima(series["fastapi_mangum"], series["powertools"])
        figures["fastapi_over_powertools_cpu"] = round(ratio, 3)
        print(f"FastAPI + Mangum / Powertools (CPU, minima): {ratio:.2f}x")
    return figures
