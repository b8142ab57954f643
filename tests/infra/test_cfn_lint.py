"""cfn-lint on every synthesized variant: no error, no warning (one cfn-lint run: its schemas load once)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.infra.synth import Synth


def test_cfn_lint_clean(
    default: Synth, provisioned: Synth, rollout: Synth, monitored: Synth, monitored_ab: Synth, tmp_path: Path
) -> None:
    paths = []
    for s in (default, provisioned, rollout, monitored, monitored_ab):
        path = tmp_path / f"{s.name}.template.json"
        path.write_text(json.dumps(s.template))
        paths.append(str(path))
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run(
        [str(cfn_lint), "--format", "parseable", "--", *paths], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
