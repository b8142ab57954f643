"""`cdk ls` / `cdk synth` without the model's context: app.py ends with one line naming the key, not a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT


def _app(context: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CDK_CONTEXT_JSON": json.dumps(context)}
    env.pop("CDK_OUTDIR", None)
    return subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_missing_model_context_is_one_line_naming_the_keys() -> None:
    done = _app({"stage": "dev"})  # what cdk passes from cdk.json when no -c is given
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: context model_uri (s3://bucket/key of the model) or model_key")
    assert "-c model_uri=s3://... -c model_sha256=..." in lines[0]
    assert "Traceback" not in done.stderr


def test_a_bad_context_value_is_one_line_too() -> None:
    done = _app({"stage": "dev", "model_uri": "s3://b/k", "model_sha256": "not-hex"})
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and "model_sha256" in done.stderr, done.stderr
