#!/usr/bin/env python3
"""`make serve`: the API Lambda handler behind a real HTTP server on 127.0.0.1.

Requests become API Gateway events (REST v1 by default; `--payload 2.0` for HTTP APIs, `url` for
function URLs) and go to `lambda_fn.handler.api_handler`, the code that runs in Lambda. Serves the demo
model (`make model`) unless MODEL_URI is set. Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from contextlib import ExitStack, suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from servingkit.http_local import demo_environment, make_server
from servingkit.train import MissingModelError

EXAMPLE = """\
  curl -s {url}/health
  curl -s {url}/model
  curl -s {url}/predict -H 'Content-Type: application/json' \\
    -d '{{"ride_id": "r1", "ride": {{"PULocationID": 161, "DOLocationID": 236, "trip_distance": 2.3,
         "pickup_datetime": "2024-03-01T08:15:00"}}}}'
  printf 'PU_DO,trip_distance,pickup_hour,pickup_dow\\n161_236,2.3,8,4\\n' | \\
    curl -s {url}/invocations -H 'Content-Type: text/csv' --data-binary @-
  curl -s {url}/openapi.json"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--payload", choices=("1.0", "2.0", "url"), default="1.0", help="API Gateway payload format")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    parser.add_argument(
        "--image",
        action="store_true",
        help="answer from the real Lambda image (built here; the model is served from an embedded S3 emulator)",
    )
    args = parser.parse_args()
    if args.image:
        return serve_image(args)

    try:
        os.environ.update(demo_environment())
    except MissingModelError as exc:
        print(exc, file=sys.stderr)
        return 2
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # no EMF lines on a terminal
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    # With metrics disabled Powertools warns on every flush that nothing was published: noise, not news.
    warnings.filterwarnings("ignore", message="No application metrics to publish")

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    server, url = make_server(
        host=args.host, port=args.port, payload_version=args.payload, log=None if args.quiet else log
    )
    print(f"serving {os.environ.get('MODEL_URI')} on {url} (API Gateway payload {args.payload}); Ctrl-C stops")
    print(EXAMPLE.format(url=url), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def serve_image(args: argparse.Namespace) -> int:
    """The API function's container behind the local server; the demo model uploaded to an emulator's S3."""
    import boto3

    from infra.topology import topology
    from servingkit.image.engine import EngineError
    from servingkit.localcloud.emulator import endpoint_environment, pointed_at, start_emulator
    from servingkit.localcloud.image_session import image_session
    from servingkit.localcloud.resources import ExportedModel, ResourceError, provision

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        with ExitStack() as stack:
            session = stack.enter_context(image_session(progress=log))
            emulator = stack.enter_context(start_emulator())
            stack.enter_context(pointed_at(emulator.endpoint_url))
            clients = {name: boto3.client(name) for name in ("kinesis", "sqs", "s3")}
            ctx = {"stage": "local"}
            resources = provision(topology(ctx), ExportedModel.load(), clients, os.environ.get("AWS_REGION", "us-east-1"))
            env = {**resources.environment, **endpoint_environment(emulator.endpoint_url)}
            api = stack.enter_context(session.api(env, ctx, name="serving-local-api"))
            server, url = make_server(
                api, host=args.host, port=args.port, payload_version=args.payload, log=None if args.quiet else log
            )
            stack.callback(server.server_close)
            print(f"serving {resources.model_uri} from the image {session.image.tag} on {url}; Ctrl-C stops")
            print(EXAMPLE.format(url=url), flush=True)
            with suppress(KeyboardInterrupt):
                server.serve_forever()
    except (EngineError, ResourceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
