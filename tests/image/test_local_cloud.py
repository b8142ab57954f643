"""`make demo ARGS=--image` and `make serve ARGS=--image` as a user runs them, on this tier's engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from servingkit.image.engine import HOST_ENV, DockerEngine
from tests.conftest import ROOT


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _env(engine: DockerEngine) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    return {**env, HOST_ENV: engine.host, "PYTHONPATH": str(ROOT)}


def test_the_demo_scores_in_the_image_and_loses_nothing(
    engine: DockerEngine, base_image: str, release: tuple[Path, Path]
) -> None:
    model, meta = release
    cmd = [sys.executable, "-m", "servingkit", "demo", "--image", "--records", "400", "--no-progress"]
    cmd += ["--model-dir", str(model), "--release", str(meta)]
    done = subprocess.run(cmd, cwd=ROOT, env=_env(engine), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["image"] is True and figures["records"] == 400, figures
    assert figures["lost"] == 0 and figures["predicted"] + figures["dead_lettered"] == 400, figures
    assert "in the cold start" in done.stdout


def test_serve_answers_from_the_image(engine: DockerEngine, base_image: str, release: tuple[Path, Path]) -> None:
    if not (ROOT / "build" / "model" / "MLmodel").is_file():
        raise AssertionError("serve --image serves build/model: run `make model` (make image-tests does)")
    port = 18000 + os.getpid() % 1000
    proc = subprocess.Popen(
        [sys.executable, "-m", "servingkit", "serve", "--image", "--port", str(port), "--quiet"],
        cwd=ROOT,
        env=_env(engine),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # As at a terminal: a shell without job control starts background jobs with SIGINT ignored, and a CI
        # runner may be one; Python then installs no KeyboardInterrupt handler and Ctrl-C would do nothing.
        preexec_fn=_sigint_default,
    )
    # Drained all along: a full pipe would block the server's own writes (and its shutdown).
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout or ()), daemon=True)
    reader.start()
    try:
        deadline, health = time.monotonic() + 300, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/health", timeout=60)
                break
            except requests.ConnectionError:
                time.sleep(0.5)
        assert health is not None and health.status_code == 200, "".join(output)[-3000:]
        assert health.json()["model"]["sha256"] == json.loads((ROOT / "build" / "release.json").read_text())["sha256"]
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C, which stops the container and the emulator
        stopping = time.monotonic()
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        reader.join(10)
    assert proc.returncode == 0, f"after {time.monotonic() - stopping:.0f} s: " + "".join(output)[-3000:]
