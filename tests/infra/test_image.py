"""The Lambda image: lint-clean Dockerfile, small build context, handlers importable from requirements.txt."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra.image import API_HANDLER, STREAM_HANDLER
from lambda_fn.config import Env
from tests.infra.synth import ROOT, Synth

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_hadolint_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_dockerfile_pins_the_base_and_installs_runtime_requirements_only() -> None:
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE, re.M)
    assert base and re.fullmatch(
        r"public\.ecr\.aws/lambda/python:3\.\d+\.\d{4}\.\d\d\.\d\d\.\d\d(@sha256:[0-9a-f]{64})?", base[1]
    )
    copies = re.findall(r"^COPY (\S+)", DOCKERFILE, re.M)
    assert copies == ["requirements.txt", "lambda_fn/"]
    assert "--only-binary=:all:" in DOCKERFILE and "--no-cache-dir" in DOCKERFILE
    assert "requirements-dev" not in DOCKERFILE


def test_the_venv_runs_the_image_python_minor() -> None:
    """Dev/prod parity: what the tests run on is the interpreter the image ships."""
    base = re.search(r"^ARG BASE_IMAGE=public\.ecr\.aws/lambda/python:(\d+)\.(\d+)\.", DOCKERFILE, re.M)
    assert base, "the Dockerfile's BASE_IMAGE is not a dated public.ecr.aws/lambda/python tag"
    assert sys.version_info[:2] == (int(base[1]), int(base[2])), (sys.version, base[0])


def test_build_context_holds_only_the_image_inputs(default: Synth) -> None:
    manifest = json.loads((default.outdir / "ServingKit-dev.assets.json").read_text())
    (image,) = manifest["dockerImages"].values()  # both functions share one image
    staged = default.outdir / image["source"]["directory"]
    files = {p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()}
    assert {"Dockerfile", "requirements.txt", "lambda_fn/handler.py"} <= files
    assert all(
        f in ("Dockerfile", "requirements.txt", ".dockerignore") or re.fullmatch(r"lambda_fn/(?:\w+/)*\w+\.py", f)
        for f in files
    ), files


def test_base_image_override_is_a_build_arg(default: Synth, rollout: Synth) -> None:
    def build_args(s: Synth) -> dict[str, str] | None:
        manifest = json.loads((s.outdir / f"ServingKit-{s.context.get('stage', 'dev')}.assets.json").read_text())
        (image,) = manifest["dockerImages"].values()
        args: dict[str, str] | None = image["source"].get("dockerBuildArgs")
        return args

    assert build_args(default) is None  # the Dockerfile's pinned default
    assert build_args(rollout) == {"BASE_IMAGE": rollout.context["base_image"]}


@pytest.fixture(scope="session")
def image_python(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A fresh venv with requirements.txt only (as the Dockerfile installs it) and a copy of lambda_fn/ only."""
    root = tmp_path_factory.mktemp("image")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    python = root / "venv" / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile"]
    subprocess.run(
        [*pip, "--only-binary=:all:", "-r", str(ROOT / "requirements.txt")],
        check=True,
        capture_output=True,
    )
    task = root / "task"
    shutil.copytree(ROOT / "lambda_fn", task / "lambda_fn", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return python, task


def _entry_points(synths: list[Synth]) -> set[str]:
    cmd = re.search(r'^CMD \["([\w.]+)"\]', DOCKERFILE, re.M)
    assert cmd
    points = {cmd[1]}
    for s in synths:
        for fn in s.resources("AWS::Lambda::Function").values():
            points.update(fn["Properties"]["ImageConfig"]["Command"])
            hook = fn["Properties"]["Environment"]["Variables"].get(Env.FEATURE_HOOK)
            if hook:
                points.add(hook.replace(":", "."))
    return points


def test_handlers_import_from_a_clean_runtime_install(
    image_python: tuple[Path, Path], default: Synth, provisioned: Synth, rollout: Synth
) -> None:
    python, task = image_python
    points = _entry_points([default, provisioned, rollout])
    assert {STREAM_HANDLER, API_HANDLER} <= points
    # -E -s: no PYTHONPATH, no user site; the cwd (the task root, as in Lambda) is first on sys.path.
    probe = (
        "import importlib, sys\n"
        "for point in sys.argv[1:]:\n"
        "    module, _, name = point.rpartition('.')\n"
        "    assert callable(getattr(importlib.import_module(module), name)), point\n"
        "importlib.import_module('lambda_fn.api.app')  # api_handler imports it lazily\n"
        "for dev_only in ('mlflow', 'aws_cdk', 'servingkit', 'infra', 'moto', 'pytest'):\n"
        "    try:\n"
        "        importlib.import_module(dev_only)\n"
        "    except ImportError:\n"
        "        continue\n"
        "    raise SystemExit(f'{dev_only} is importable in the runtime image')\n"
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(task), "POWERTOOLS_METRICS_DISABLED": "true"}
    result = subprocess.run(
        [str(python), "-E", "-s", "-c", probe, *sorted(points)], cwd=task, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
