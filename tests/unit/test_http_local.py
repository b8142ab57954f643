"""The local HTTP server's demo settings."""

from __future__ import annotations

import pytest

from lambda_fn.config import Env
from servingkit.http_local import demo_environment
from servingkit.train import MissingModelError


def _no_model(root: object = None) -> None:
    raise MissingModelError("build/model is missing: run `make model` (servingkit train) first")


def test_model_uri_takes_over_without_a_demo_model(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setattr("servingkit.train.demo_artifact", _no_model)
    clean_env.setenv(Env.MODEL_URI, "s3://bucket/prefix")
    assert demo_environment() == {}


def test_missing_demo_model_is_reported_without_model_uri(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setattr("servingkit.train.demo_artifact", _no_model)
    with pytest.raises(MissingModelError):
        demo_environment()
