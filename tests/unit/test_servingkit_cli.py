"""The `servingkit` command: every subcommand documents its options, bad values are one-line usage errors
(exit 2), and the package runs as `python -m servingkit` and as the installed entry point."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from servingkit.cli import main

COMMANDS = [
    ["train"],
    ["publish"],
    ["promote"],
    ["demo"],
    ["serve"],
    ["batch"],
    ["make-rides"],
    ["localstack"],
    *(["localstack", name] for name in ("install", "run", "status", "e2e", "bench", "serve")),
    ["bench"],
    *(
        ["bench", name]
        for name in (
            "stream",
            "coldstart",
            "rollout",
            "api",
            "batch",
            "single-row",
            "chart",
            "image",
            "faults",
            "synth",
            "all",
        )
    ),
    ["monitor"],
    *(["monitor", name] for name in ("run", "backfill", "report")),
    ["release"],
    *(["release", name] for name in ("run", "context", "wait")),
]


def _command(path: list[str]) -> click.Command:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        found = command.get_command(click.Context(command), name)
        assert found is not None, f"servingkit {' '.join(path)}: no such command"
        command = found
    return command


def test_every_user_job_is_a_subcommand() -> None:
    assert set(main.list_commands(click.Context(main))) == {
        "train", "publish", "promote", "demo", "serve", "batch", "make-rides", "localstack", "bench", "monitor",
        "dlq", "predictions", "release",
    }  # fmt: skip


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_exits_0_and_documents_every_option(path: list[str]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: servingkit {' '.join(path)}".rstrip())
    command = _command(path)
    assert command.help and command.help.strip(), "no description"
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            assert param.help, f"{param.opts[0]} has no help"
            for opt in param.opts:
                assert opt in result.output
            if param.envvar:
                assert str(param.envvar) in result.output  # the environment it reads is named


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["demo", "--records", "0"], "--records"),
        (["demo", "--poison-rate", "1"], "--poison-rate"),
        (["demo", "--target", "aws"], "--target"),
        (["demo", "-c", "batch_size"], "KEY=VALUE"),
        (["serve", "--payload", "3.0"], "--payload"),
        (["serve", "--port", "http"], "--port"),
        (["batch", "in/", "-o", "out/", "--chunk-size", "0"], "--chunk-size"),
        (["batch", "in/", "-o", "out/", "--engine", "dask"], "--engine"),
        (["batch", "-o", "out/"], "INPUTS"),
        (["make-rides", "--bad", "2"], "--bad"),
        (["make-rides", "--format", "xlsx"], "--format"),
        (["localstack", "run", "--port", "-1"], "--port"),
        (["bench", "stream", "--sizes", "100,many"], "--sizes"),
        (["bench", "faults", "--faults", "flood"], "--faults"),
        (["train", "--rows", "0"], "--rows"),
    ],
)
def test_a_bad_option_value_is_a_one_line_usage_error(argv: list[str], named: str) -> None:
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and named in errors[0], result.output
    assert ("Traceback" not in result.output and result.exception is None) or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("argv", "section", "plan"),
    [
        (["stream", "--sizes", "100,10000", "--repeats", "3"], "stream", {"repeats": 3, "sizes": (100, 10000)}),
        (["coldstart", "--skip-container"], "coldstart", {"container": False}),
        (["api", "--requests", "40", "--quick"], "api", {"requests": 40, "quick": True}),
        (["batch", "--rows", "5000", "--skip-spark"], "batch", {"rows": 5000, "spark": False}),
        (["single-row", "--repeats", "2"], "single_row", {"repeats": 2}),
    ],
)
def test_a_single_bench_command_is_its_section_of_bench_all(
    argv: list[str], section: str, plan: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One implementation: `bench stream` etc. run `bench all --section NAME`'s code with the options as its plan."""
    from servingkit.bench import suite

    calls: list[tuple[Path, Path, suite.Plan, tuple[str, ...]]] = []

    def fake_run(out: Path, chart: Path, p: suite.Plan, sections: tuple[str, ...]) -> dict[str, object]:
        calls.append((out, chart, p, sections))
        return {"targets": []}

    monkeypatch.setattr(suite, "run", fake_run)
    out = tmp_path / "one.json"
    result = CliRunner().invoke(main, ["bench", *argv, "--out", str(out)])
    assert result.exit_code == 0, result.output
    [(written, chart, got, sections)] = calls
    assert sections == (section,) and written == out and chart == out.with_suffix(".png")
    assert got == suite.Plan(**plan)  # type: ignore[arg-type]
    assert json.loads(result.output.strip().splitlines()[-1]) == {"out": str(out), "targets": []}


def test_publish_without_a_bucket_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODEL_BUCKET", raising=False)
    result = CliRunner().invoke(main, ["publish", "build/model"])
    assert result.exit_code == 2 and "give --bucket or set MODEL_BUCKET" in result.output


def test_make_rides_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "old.parquet").write_text("x")
    result = CliRunner().invoke(main, ["make-rides", "-o", str(tmp_path)])
    assert result.exit_code == 2 and "is not empty" in result.output


def test_the_written_out_choices_agree_with_the_library() -> None:
    from servingkit.batch import core, io, local
    from servingkit.cli import batch, bench, localstack
    from servingkit.localcloud import fault_injection as faults
    from servingkit.localcloud import localstack as ls

    assert tuple(io.FORMATS) == batch.FORMATS
    assert tuple(local.PARALLELISM) == batch.PARALLELISM
    assert tuple(core.PREDICTION_TYPES) == batch.PREDICTION_TYPES
    assert (tuple(faults.FAULTS), tuple(faults.PHASES)) == (bench.FAULTS, bench.PHASES)
    assert (ls.DEFAULT_PORT, tuple(ls.DEFAULT_SERVICES)) == (localstack.DEFAULT_PORT, localstack.DEFAULT_SERVICES)


def test_python_m_servingkit_and_the_entry_point_run() -> None:
    module = subprocess.run([sys.executable, "-m", "servingkit", "--help"], capture_output=True, text=True)
    assert module.returncode == 0 and "Usage: servingkit" in module.stdout, module.stderr
    entry = Path(sys.executable).with_name("servingkit")
    assert entry.is_file() or shutil.which("servingkit"), "the servingkit entry point is not installed"
    installed = subprocess.run([str(entry), "bench", "--help"], capture_output=True, text=True)
    assert installed.returncode == 0 and "Usage: servingkit bench" in installed.stdout, installed.stderr


def test_the_cli_imports_no_heavy_module() -> None:
    """--help stays quick, and the EMR job (servingkit/jobs/batch_score.py) needs only click: the command modules
    import no library module until a command runs."""
    heavy = ("pandas", "pyarrow", "boto3", "mlflow", "servingkit.localcloud", "lambda_fn")
    code = f"import sys, servingkit.cli; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
