"""Errors a person causes end in one line that says what to do: a busy port (serve, demo --serve, checked before
the demo's pipeline runs), AWS set-up errors; and train, publish and promote share one MLflow store."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from servingkit.cli import main
from servingkit.cli.errors import CommandError, user_errors
from servingkit.serve import PortInUseError, ensure_port_free
from servingkit.tracking import DEFAULT_TRACKING_URI, resolve_tracking_uri


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_busy_port_is_named(busy_port: int) -> None:
    with pytest.raises(PortInUseError, match=f"port {busy_port} on 127.0.0.1 is in use: pass --port"):
        ensure_port_free("127.0.0.1", busy_port)
    ensure_port_free("127.0.0.1", 0)


def test_serve_on_a_busy_port_is_one_line(busy_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_URI", str(Path(__file__)))  # never loaded: the port is refused first
    result = CliRunner().invoke(main, ["serve", "--port", str(busy_port)])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1] == (
        f"error: port {busy_port} on 127.0.0.1 is in use: pass --port (another port, or 0 for any free one)"
    )
    assert "Traceback" not in result.output


def test_demo_serve_checks_the_port_before_running_anything(
    busy_port: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import servingkit.demo as demo

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the pipeline ran before the port was checked")

    monkeypatch.setattr(demo, "ensure_model", never)
    monkeypatch.setattr(demo, "LocalCloud", never)
    result = CliRunner().invoke(main, ["demo", "--serve", "--port", str(busy_port), "--model-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (
        f"error: port {busy_port} on 127.0.0.1 is in use: pass --port (another port, or 0 for any free one)"
    )


def test_aws_set_up_errors_become_one_line_with_the_fix() -> None:
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError

    with pytest.raises(CommandError, match="no AWS credentials: set AWS_PROFILE"), user_errors():
        raise NoCredentialsError()
    with pytest.raises(CommandError, match="nothing answers at the AWS endpoint"), user_errors():
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
    with pytest.raises(CommandError, match=r"^boom$"), user_errors(KeyError, ValueError):
        raise ValueError("boom")
    with pytest.raises(RuntimeError), user_errors(ValueError):  # not the person's: the traceback stays
        raise RuntimeError("bug")


@pytest.mark.parametrize("command", ["train", "publish", "promote"])
def test_train_publish_and_promote_share_one_tracking_uri(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One option definition: the same default, $MLFLOW_TRACKING_URI honoured, given after the subcommand."""
    option = next(p for p in main.commands[command].params if p.name == "tracking_uri")
    assert option.default == DEFAULT_TRACKING_URI == "sqlite:///mlruns.db"
    assert option.envvar == "MLFLOW_TRACKING_URI"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri() == DEFAULT_TRACKING_URI
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert resolve_tracking_uri() == "sqlite:///elsewhere.db"
    assert resolve_tracking_uri("sqlite:///given.db") == "sqlite:///given.db"


def test_promote_and_publish_reach_the_store_train_wrote(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --tracking-uri or the variable, promote asks the library for train's store, not MLflow's default."""
    import servingkit.publish as library

    seen: dict[str, object] = {}

    def promote(name: str, aliases: dict[str, str], tracking_uri: str | None = None) -> dict[str, tuple[None, str]]:
        seen["uri"] = tracking_uri
        seen["process"] = os.environ.get("MLFLOW_TRACKING_URI")  # MLflow's models:/ downloads read this one
        return {"champion": (None, "1")}

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unset below")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setattr(library, "promote", promote)
    result = CliRunner().invoke(main, ["promote", "m", "--champion", "1"])
    assert result.exit_code == 0, result.output
    assert seen["uri"] == seen["process"] == DEFAULT_TRACKING_URI
    assert "MLFLOW_TRACKING_URI" not in os.environ  # restored after the command
    result = CliRunner().invoke(main, ["promote", "m", "--champion", "1", "--tracking-uri", "sqlite:///x.db"])
    assert seen["uri"] == seen["process"] == "sqlite:///x.db"
