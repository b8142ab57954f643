"""The pinned CDK CLI works offline: `cdk ls` and `cdk synth` with notices and telemetry off."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.infra.synth import ROOT, SHA, cli_env

CONTEXT = ["-c", "model_uri=s3://example-models/taxi/1", "-c", f"model_sha256={SHA}", "-c", "stage=ci"]


def test_cdk_version_is_the_pinned_v2(cdk_cli: list[str], tmp_path: Path) -> None:
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["aws-cdk"]
    out = subprocess.run([*cdk_cli, "--version"], cwd=ROOT, env=cli_env(tmp_path), capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith(pinned + " ") and pinned.startswith("2."), out.stdout


def test_cdk_synth_and_ls_offline(cdk_cli: list[str], tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    out = tmp_path / "cdk.out"
    synth = subprocess.run(
        [*cdk_cli, "synth", "--quiet", *CONTEXT, "-o", str(out)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert synth.returncode == 0, synth.stderr[-3000:]
    template = json.loads((out / "ServingKit-ci.template.json").read_text())
    assert any(r["Type"] == "AWS::Lambda::EventSourceMapping" for r in template["Resources"].values())
    assert "notices" not in synth.stderr.lower() and "telemetry" not in synth.stderr.lower()
    # `cdk ls` on the synthesized assembly (what `cdk deploy --app cdk.out` reads) needs no second synth.
    ls = subprocess.run([*cdk_cli, "ls", "--app", str(out)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert ls.returncode == 0, ls.stderr[-3000:]
    assert ls.stdout.split() == ["ServingKit-ci"]


def test_cdk_synth_reports_a_bad_context_key(cdk_cli: list[str], tmp_path: Path) -> None:
    bad = subprocess.run(
        [*cdk_cli, "synth", "--quiet", *CONTEXT, "-c", "rollout=yolo", "-o", str(tmp_path / "o")],
        cwd=ROOT,
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "context rollout='yolo'" in bad.stderr
