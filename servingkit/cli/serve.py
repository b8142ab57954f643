"""`servingkit serve` (`make serve`): the API Lambda handler behind a local HTTP server."""

from __future__ import annotations

from typing import cast

import click

from servingkit.cli.errors import CommandError, user_errors


@click.command()
@click.option("--host", default="127.0.0.1", help="Bind address (127.0.0.1: this machine only).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, envvar="PORT", show_envvar=True, help="Port.")
@click.option("--payload", type=click.Choice(["1.0", "2.0", "url"]), default="1.0", help="API Gateway payload format.")
@click.option("--quiet", is_flag=True, help="Do not log each request.")
@click.option(
    "--image",
    is_flag=True,
    help="Answer from the real Lambda image (built here, or on $SERVINGKIT_DOCKER_HOST, on the stand-in base or "
    "$SERVINGKIT_BASE_IMAGE; the model is served from an embedded S3 emulator).",
)
def serve(host: str, port: int, payload: str, quiet: bool, image: bool) -> None:
    """The API Lambda handler behind a real HTTP server on 127.0.0.1, until Ctrl-C.

    Requests become API Gateway events (REST v1 by default; --payload 2.0 for HTTP APIs, url for function
    URLs) and go to lambda_fn.handler.api_handler, the code that runs in Lambda. Serves the demo model
    (`make model`) unless MODEL_URI is set (the function's other variables, MODEL_SHA256, FEATURE_HOOK, ...,
    are read too). Exit status 2 when there is no model, the port is in use or the image cannot be built.
    """
    from servingkit.http_local import PayloadVersion
    from servingkit.serve import PortInUseError, serve_image, serve_local
    from servingkit.train import MissingModelError

    version = cast(PayloadVersion, payload)
    if not image:
        try:
            with user_errors(PortInUseError, exit_code=2):
                serve_local(host, port, version, quiet=quiet)
        except MissingModelError as exc:
            raise CommandError(str(exc), exit_code=2, prefix=None) from exc
        return
    from servingkit.image.engine import EngineError
    from servingkit.localcloud.resources import ResourceError

    with user_errors(EngineError, ResourceError, PortInUseError, exit_code=2):
        serve_image(host, port, version, quiet=quiet)
