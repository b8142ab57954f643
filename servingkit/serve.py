"""The API Lambda handler behind a real HTTP server on 127.0.0.1 (`servingkit serve`, `make serve`).

Requests become API Gateway events (REST v1 by default; payload "2.0" for HTTP APIs, "url" for function
URLs) and go to `lambda_fn.handler.api_handler`, the code that runs in Lambda. Serves the demo model
(`make model`) unless MODEL_URI is set; `serve_image` answers from the real Lambda image instead. Ctrl-C
stops either.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress

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


class PortInUseError(Exception):
    """The port asked for is taken: a person can fix it (another port, or stop what holds it)."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"port {port} on {host} is in use: pass --port (another port, or 0 for any free one)")


def ensure_port_free(host: str, port: int) -> None:
    """Raise PortInUseError now if `port` cannot be bound, before anything long runs (port 0 is always free)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, port_in_use_error(host, port):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the HTTP server binds it
        sock.bind((host, port))


@contextmanager
def port_in_use_error(host: str, port: int) -> Iterator[None]:
    """Turn the OSError of binding a taken port into PortInUseError; other OSErrors pass."""
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise PortInUseError(host, port) from exc


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def serve_local(host: str, port: int, payload: PayloadVersion, *, quiet: bool = False) -> None:
    """The handler in this process, until Ctrl-C. Raises MissingModelError when there is no model to serve."""
    os.environ.update(demo_environment())
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # no EMF lines on a terminal
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    # With metrics disabled Powertools warns on every flush that nothing was published: noise, not news.
    warnings.filterwarnings("ignore", message="No application metrics to publish")

    with port_in_use_error(host, port):
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

    ensure_port_free(host, port)  # before the image is built
    with ExitStack() as stack:
        session = stack.enter_context(image_session(progress=log))
        emulator = stack.enter_context(start_emulator())
        stack.enter_context(pointed_at(emulator.endpoint_url))
        clients = {name: boto3.client(name) for name in ("kinesis", "sqs", "s3")}
        ctx = {"stage": "local"}
        resources = provision(topology(ctx), ExportedModel.load(), clients, os.environ.get("AWS_REGION", "us-east-1"))
        env = {**resources.environment, **endpoint_environment(emulator.endpoint_url)}
        api = stack.enter_context(session.api(env, ctx, name="serving-local-api"))
        with port_in_use_error(host, port):
            server, url = make_server(api, host=host, port=port, payload_version=payload, log=None if quiet else log)
        stack.callback(server.server_close)
        print(f"serving {resources.model_uri} from the image {session.image.tag} on {url}; Ctrl-C stops")
        print(EXAMPLE.format(url=url), flush=True)
        with suppress(KeyboardInterrupt):
            server.serve_forever()
