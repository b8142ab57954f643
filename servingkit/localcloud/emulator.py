"""An AWS emulator on 127.0.0.1 (moto's server in a thread) and the environment that points boto3 at it.

Code under test is never told about the emulator: it only sees the SDK's standard `AWS_ENDPOINT_URL`
(or `AWS_ENDPOINT_URL_<SERVICE>`) variables and fake credentials, exactly as it would see LocalStack's.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

LOCALHOST = "127.0.0.1"  # every local server of the kit binds loopback only
DEFAULT_REGION = "us-east-1"
#: Credentials that no AWS account accepts: a request that escaped the emulator would fail, not bill.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
# Variables that could send requests elsewhere or pick real credentials; cleared while pointed locally.
_SHADOWING = (
    "AWS_PROFILE",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_SECURITY_TOKEN",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


@dataclass
class Emulator:
    """A running moto server; `stop()` shuts it down and joins its thread."""

    endpoint_url: str
    _server: Any

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a server started in another process)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def start_emulator(port: int = 0) -> Emulator:
    """Start moto's server on 127.0.0.1 (port 0: a free port chosen by the OS) and wait until it listens."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address=LOCALHOST, port=port, verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    return Emulator(endpoint_url=f"http://{host}:{bound}", _server=server)


def endpoint_environment(endpoint_url: str, region: str = DEFAULT_REGION) -> dict[str, str]:
    """The standard SDK variables that send every boto3 client to `endpoint_url` with fake credentials."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        **FAKE_CREDENTIALS,
    }


@contextmanager
def patched_environ(values: Mapping[str, str], unset: tuple[str, ...] = ()) -> Iterator[None]:
    """Set variables for the duration of the block and restore the previous values afterwards."""
    saved = {name: os.environ.get(name) for name in (*values, *unset)}
    try:
        for name in unset:
            os.environ.pop(name, None)
        os.environ.update(values)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def pointed_at(endpoint_url: str, region: str = DEFAULT_REGION) -> Iterator[None]:
    """Point boto3 at `endpoint_url` only through the standard variables; service-specific overrides are
    cleared so no client slips past to another endpoint."""
    service_overrides = tuple(n for n in os.environ if n.startswith("AWS_ENDPOINT_URL_"))
    with patched_environ(endpoint_environment(endpoint_url, region), unset=_SHADOWING + service_overrides):
        yield
