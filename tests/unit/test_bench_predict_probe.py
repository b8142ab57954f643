"""servingkit.bench.api_peers' predict probe: a process started with it counts its `Pipeline.predict` calls and
their CPU where the bench reads them; without its variable it changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from servingkit.bench.api_peers import PROBE, predict_totals
from tests.conftest import ROOT

CHILD = """
import sys
import numpy as np
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

X = np.arange(2000.0).reshape(1000, 2)
pipe = Pipeline([("scale", StandardScaler()), ("fit", LinearRegression())]).fit(X, X[:, 0])
for _ in range(int(sys.argv[1])):
    assert abs(pipe.predict(X[:3])[1] - 2.0) < 1e-9  # the wrapped predict still answers
pipe.fit(X, X[:, 1])  # not a predict: not counted
"""


def _run(code: str, *args: str, probe: Path | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{PROBE}{os.pathsep}{ROOT}"}
    env.pop("SERVINGKIT_PREDICT_PROBE", None)
    if probe is not None:
        env["SERVINGKIT_PREDICT_PROBE"] = str(probe)
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=False)


def test_each_process_counts_its_predict_calls_and_their_cpu(tmp_path: Path) -> None:
    for calls in (3, 5):
        done = _run(CHILD, str(calls), probe=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
    assert len(list(tmp_path.iterdir())) == 2  # one file per process
    calls, seconds = predict_totals(tmp_path)
    assert calls == 8
    assert 0 < seconds < 5


def test_without_its_variable_the_probe_imports_nothing() -> None:
    done = _run("import sys; print('sitecustomize' in sys.modules, 'sklearn' in sys.modules)", probe=None)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "False"]  # the probe was loaded, and left scikit-learn alone
