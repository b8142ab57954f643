"""The resolvers and the entry point: one API event in, one proxy result out.

`handle(event, context)` serves API Gateway REST (payload v1), HTTP API (v2) and Lambda function URL
events through Powertools' event handler (one resolver per payload format, the same routes on each).
Unknown paths are 404, known paths with another method 405 (with Allow); `ApiError` and any other
exception are translated into the one error body (`lambda_fn.api.errors`). Every answer carries the
request id (X-Request-Id header, and error bodies).
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.event_handler import (
    APIGatewayHttpResolver,
    APIGatewayRestResolver,
    LambdaFunctionUrlResolver,
    Response,
)
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from lambda_fn.api import serving
from lambda_fn.api.errors import ApiError, crash_response, error_response, too_large
from lambda_fn.api.request import body_size, payload_kind, request_id
from lambda_fn.api.routes import allowed_methods, register
from lambda_fn.config import Metric
from lambda_fn.stream import MetricsLike


def build_resolver(kind: str) -> ApiGatewayResolver:
    """A resolver for one payload format with every route; built once per format per container."""
    app: ApiGatewayResolver
    if kind == "rest":
        app = APIGatewayRestResolver()
    elif kind == "http":
        app = APIGatewayHttpResolver()
    else:
        app = LambdaFunctionUrlResolver()
    register(app)

    @app.not_found
    def _not_found(_: NotFoundError) -> Response[str]:
        path = app.current_event.path
        methods = allowed_methods(path)
        if methods:
            raise ApiError(
                405,
                "method_not_allowed",
                f"{app.current_event.http_method} is not allowed on {path}; use {', '.join(methods)}",
                headers={"Allow": ", ".join(methods)},
            )
        raise ApiError(404, "not_found", f"no route {path}; see GET /openapi.json")

    def _request_id() -> str:
        return request_id(app.current_event.raw_event, app.lambda_context)

    app.exception_handler(ApiError)(lambda err: error_response(err, _request_id()))
    app.exception_handler(Exception)(lambda _: crash_response(_request_id()))
    return app


@lru_cache(maxsize=3)
def resolver(kind: str) -> ApiGatewayResolver:
    return build_resolver(kind)


def _with_request_id(result: dict[str, Any], rid: str) -> dict[str, Any]:
    if "multiValueHeaders" in result:
        result["multiValueHeaders"]["X-Request-Id"] = [rid]
    else:
        result.setdefault("headers", {})["X-Request-Id"] = rid
    return result


def handle(event: dict[str, Any], context: Any, metrics: MetricsLike | None = None) -> dict[str, Any]:
    """Route one API event; every answer carries the request id (X-Request-Id header, and error bodies)."""
    started = time.perf_counter()
    kind = payload_kind(event)
    rid = request_id(event, context)
    limit = serving.max_body()
    if body_size(event) > limit:
        result = _with_request_id(too_large(kind, limit, rid), rid)
    else:
        result = _with_request_id(resolver(kind).resolve(event, context), rid)
    if metrics is not None:
        _emit(metrics, int(result["statusCode"]), time.perf_counter() - started)
    return result


def _emit(metrics: MetricsLike, status: int, seconds: float) -> None:
    from aws_lambda_powertools.metrics import MetricUnit

    metrics.add_metric(name=Metric.API_REQUESTS, unit=MetricUnit.Count, value=1)
    metrics.add_metric(name=Metric.API_LATENCY, unit=MetricUnit.Milliseconds, value=seconds * 1000)
    metrics.add_metric(name=Metric.API_CLIENT_ERRORS, unit=MetricUnit.Count, value=int(400 <= status < 500))
    metrics.add_metric(name=Metric.API_SERVER_ERRORS, unit=MetricUnit.Count, value=int(status >= 500))
