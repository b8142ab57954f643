"""The one MLflow store that `train`, `publish` and `promote` share unless told otherwise.

A relative SQLite file in the working directory, so the commands of the README, run one after the other
in the project's directory, see the same runs and registered versions (MLflow's own default differs).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"
ENV = "MLFLOW_TRACKING_URI"


def resolve_tracking_uri(given: str | None = None) -> str:
    """`given`, else $MLFLOW_TRACKING_URI, else DEFAULT_TRACKING_URI."""
    return given or os.environ.get(ENV) or DEFAULT_TRACKING_URI


@contextmanager
def process_store(uri: str) -> Iterator[None]:
    """Within the block, `uri` is this process's MLflow store too, not only that of the clients handed it.

    MLflow resolves a `models:/name@alias` download through the process's registry URI, whatever registry_uri
    `mlflow.artifacts.download_artifacts` is given (mlflow 3.x, `ModelsArtifactRepository._get_model_uri_infos`):
    without this, `servingkit publish models:/...` looked for the model in MLflow's default store (and made an
    empty `mlflow.db` there) while train and promote used `uri`.
    """
    saved = os.environ.get(ENV)
    os.environ[ENV] = uri
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = saved
