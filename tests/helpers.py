"""Test builders: small real models in every supported format, and Kinesis events as Lambda sends them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from servingkit.events import STREAM_ARN, kinesis_event, kinesis_record, kpl_aggregate
from servingkit.lambda_context import LambdaContext, function_arn

if TYPE_CHECKING:
    import pytest
    from aws_lambda_powertools.utilities.typing import LambdaContext as PowertoolsContext

    from lambda_fn.model_store import LoadedModel

ARN = STREAM_ARN
# Re-exported: the tests build events with the same code the benchmarks and the local cloud use.
__all__ = ["ARN", "FakeContext", "kinesis_event", "kinesis_record", "kpl_aggregate"]


def tiny_frame(n: int = 300, seed: int = 0) -> tuple[Any, np.ndarray]:
    """A small regression problem with a string, a double and a long column."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    zone = rng.choice(["a", "b", "c"], size=n)
    distance = rng.uniform(0.5, 20, size=n)
    hour = rng.integers(0, 24, size=n)
    y = 3 + 2.5 * distance + np.where(zone == "a", 5, 0) + 0.3 * hour + rng.normal(0, 0.5, size=n)
    return pd.DataFrame({"zone": zone, "distance": distance, "hour": hour.astype(np.int64)}), y


def tiny_pipeline() -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    x, y = tiny_frame()
    pipe = Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [("zone", OneHotEncoder(handle_unknown="ignore"), ["zone"])], remainder="passthrough"
                ),
            ),
            ("model", LinearRegression()),
        ]
    )
    return pipe.fit(x, y)


def _pin(dist: str) -> str:
    from importlib.metadata import version

    return f"{dist}=={version(dist)}"


# What MLflow would infer for these models, given up front: its inference runs the model in a child process
# (about 5 s a save), which `servingkit train` still does for real.
_MLFLOW_REQUIREMENTS = [_pin(d) for d in ("mlflow", "numpy", "pandas", "scikit-learn", "scipy")]


def save_mlflow_model(path: Path, model: Any | None = None, serialization_format: str = "skops") -> Path:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    model = model if model is not None else tiny_pipeline()
    x, _ = tiny_frame(20)
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(x, model.predict(x)),
        serialization_format=serialization_format,
        metadata={"name": "tiny"},
        pip_requirements=[*_MLFLOW_REQUIREMENTS, _pin("skops" if serialization_format == "skops" else "cloudpickle")],
    )
    return path


def save_skops(path: Path, model: Any | None = None) -> Path:
    import skops.io as sio

    sio.dump(model if model is not None else tiny_pipeline(), str(path))
    return path


def save_joblib(path: Path, model: Any | None = None) -> Path:
    import joblib

    joblib.dump(model if model is not None else tiny_pipeline(), path)
    return path


def fake_model(estimator: Any, signature: Any = None, *, name: str = "m", sha256: str = "0" * 64) -> LoadedModel:
    """A LoadedModel around any object with `predict`, as the model store would hand it over."""
    from lambda_fn.model_store import LoadedModel

    return LoadedModel(
        name=name,
        version="1",
        sha256=sha256,
        uri=f"file:///{name}",
        format="test",
        signature=signature,
        load_seconds=0,
        loaded_at=0,
        estimator=estimator,
    )


def pin_local_model(
    env: pytest.MonkeyPatch, model_dir: Path, cache: Path, *, name: str = "tiny", version: str | None = None
) -> pytest.MonkeyPatch:
    """Point the kit's settings at a local model directory, pinned by its checksum as a deployment would."""
    from lambda_fn.model_store import artifact_sha256

    env.setenv("MODEL_URI", str(model_dir))
    env.setenv("MODEL_SHA256", artifact_sha256(model_dir))
    env.setenv("MODEL_NAME", name)
    if version is not None:
        env.setenv("MODEL_VERSION", version)
    env.setenv("MODEL_CACHE_DIR", str(cache))
    return env


def tiny_row(i: int = 0) -> dict[str, Any]:
    return {"zone": "abc"[i % 3], "distance": 1.0 + (i % 17), "hour": i % 24}


class FakeContext(LambdaContext):
    """The context the tests' handlers get: the scorer's names and a fixed request id."""

    def __init__(self) -> None:
        super().__init__(
            function_name="scorer",
            invoked_function_arn=function_arn("scorer", "live"),
            aws_request_id="00000000-0000-4000-8000-000000000000",
            timeout_ms=300_000,
        )


def handler_context() -> PowertoolsContext:
    """A FakeContext typed as the handlers' signatures name their context (Powertools' LambdaContext, used there
    only as an annotation: the handlers and Powertools read just the attributes FakeContext has)."""
    return cast("PowertoolsContext", FakeContext())


def recorded_env_variant(src: Path, dst: Path, *, python: str | None = None, sklearn: str | None = None) -> Path:
    """A copy of an MLflow directory whose python_env.yaml / requirements.txt record other versions."""
    import re
    import shutil

    shutil.copytree(src, dst)
    if python is not None:
        env = dst / "python_env.yaml"
        env.write_text(re.sub(r"(?m)^python: .*$", f"python: {python}", env.read_text()))
    if sklearn is not None:
        reqs = dst / "requirements.txt"
        reqs.write_text(re.sub(r"(?m)^scikit-learn==.*$", f"scikit-learn=={sklearn}", reqs.read_text()))
    return dst


def run_cli(argv: list[str]) -> int:
    """`servingkit ARGV` in this process, as a user runs it: output on sys.stdout / sys.stderr (capsys sees
    it), the exit status returned."""
    from servingkit.cli import main

    try:
        main.main(args=list(argv), prog_name="servingkit")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
