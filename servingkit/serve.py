"""The API Lambda handler behind a real HTTP server on 127.0.0.1 (`servingkit serve`, `make serve`).

Requests become API Gateway events (REST v1 by default; payload "2.0" for HTTP APIs, "url" for function
URLs) and go to `lambda_fn.handler.api_handler`, the code that runs in Lambda. Serves the demo model
(`make model`) unless MODEL_URI is set; `serve_image` answers from the real Lambda image instead. Ctrl-C
stops either.
"""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import ExitStack, suppress

from servingkit.http_local import PayloadVersion, demo_environment, make_server

PAYLOADS = ("1.0", "2.0", "url")

EXAMPLE = """\
  curl -s {url}/health
  curl -s {url}/model
  curl -s {url}/predict -H 'Content-Type: application/json' \\
    -d '{{"ride_id": "r1", "ride": {{"PULocationID": 161, "DOLocationID": 236, "trip_distance": 2.3,
         "pickup_datetime": "2024-03-01T08:15:00"}}}}'
  printf 'PU_DO,trip_distance,pickup_hour,pickup_dow\\n161_236,2.3,8,4\\n' | \\
    curl -s {url}/invocations -H 'Content-Type: text/csv' --data-binary @-
  curl -s {url}/openapi.json"""


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def serve_local(host: str, port: int, payload: PayloadVersion, *, quiet: bool = False) -> None:
    """The handler in this process, until Ctrl-C. Raises MissingModelError when there is no model to serve."""
    os.environ.update(demo_environment())
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # no EMF lines on a terminal
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    # With metrics disabled Powertools warns on every flush that nothing was published: noise, not news.
    warnings.filterwarnings("ignore", message="No application metrics to publish")

    server, url = make_server(host=host, port=port, payload_version=payload, log=None if quiet else log)
    print(f"serving {os.environ.get('MODEL_URI')} on {url} (API Gateway payload {payload}); Ctrl-C stops")
    print(EXAMPLE.format(url=url), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def serve_image(host: str, port: int, payload: PayloadVersion, *, quiet: bool = False) -> None:
    """The API function's container behind the local server; the demo model uploaded to an emulator's S3.

    Raises EngineError or ResourceError when the image or the emulator's resources cannot be made."""
    import boto3

    from infra.topology import topology
    from servingkit.localcloud.emulator import endpoint_environment, pointed_at, start_emulator
    from servingkit.localcloud.image_session import image_session
    from servingkit.localcloud.resources import ExportedModel, provision

    with ExitStack() as stack:
        session = stack.enter_context(image_session(progress=log))
        emulator = stack.enter_context(start_emulator())
        stack.enter_context(pointed_at(emulator.endpoint_url))
        clients = {name: boto3.client(name) for name in ("kinesis", "sqs", "s3")}
        ctx = {"stage": "local"}
        resources = provision(topology(ctx), ExportedModel.load(), clients, os.environ.get("AWS_REGION", "us-east-1"))
        env = {**resources.environment, **endpoint_environment(emulator.endpoint_url)}
        api = stack.enter_context(session.api(env, ctx, name="serving-local-api"))
        server, url = make_server(api, host=host, port=port, payload_version=payload, log=None if quiet else log)
        stack.callback(server.server_close)
        print(f"serving {resources.model_uri} from the image {session.image.tag} on {url}; Ctrl-C stops")
        print(EXAMPLE.format(url=url), flush=True)
        with suppress(KeyboardInterrupt):
            server.serve_forever()
