"""Property-based fuzzing of the API from its OpenAPI document (schemathesis), over real HTTP.

The document is the one the API serves for the loaded model (GET /openapi.json: the committed generic
document with the model's columns filled in), so generated requests reach the model as well as the
validation. Each operation gets schema-conforming (positive) and schema-violating (negative) requests;
the checks are: no 5xx, every status code documented, the documented content type, and every response
body valid against its documented schema. Bounded (examples per operation, no deadline) so the whole
run stays well under a minute.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from lambda_fn.api import ROUTES
from servingkit.http_local import serving
from tests.helpers import pin_local_model

MAX_EXAMPLES = 20
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
# Negative cases need something to break: a body (GETs here take nothing but the fixed model name).
CASES = [
    (method, re.sub(r"<(\w+)>", r"{\1}", rule), mode)
    for method, rule, _ in ROUTES
    for mode in ((POSITIVE, NEGATIVE) if method == "POST" else (POSITIVE,))
]
# Row-shaped bodies that a generator fills validly often enough; v2 tensors must agree in length, which
# JSON Schema cannot say, so those are checked for conformance only.
MUST_REACH_MODEL = {"/predict", "/invocations"}


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {g.value}" for m, p, g in CASES])
def test_api_conforms_to_its_openapi_document(
    clean_env: pytest.MonkeyPatch,
    tiny_mlflow_dir: Path,
    tmp_path: Path,
    method: str,
    path: str,
    mode: schemathesis.GenerationMode,
) -> None:
    pin_local_model(clean_env, tiny_mlflow_dir, tmp_path / "cache")
    clean_env.setenv("API_MAX_BODY_BYTES", "65536")
    statuses: Counter[int] = Counter()
    with serving() as url, requests.Session() as session:
        doc = session.get(f"{url}/openapi.json", timeout=30).json()
        assert "ModelRow" in doc["components"]["schemas"], "the served document names the model's columns"
        schema = schemathesis.openapi.from_dict(doc)
        schema.config.update(base_url=url)
        operation = schema[path][method]
        # The served model's name and version, so /v2/models/{name}/... reaches the model, not only the 404 branch.
        served = {"name": "tiny", "version": session.get(f"{url}/model", timeout=30).json()["version"]}
        params = {k: v for k, v in served.items() if f"{{{k}}}" in path}
        strategy = operation.as_strategy(mode, path_parameters=params or None)

        @given(case=strategy)
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),  # a bounded smoke of the contract, not a search
        )
        def run(case: schemathesis.Case[Any]) -> None:
            response = case.call_and_validate(session=session, checks=CHECKS, timeout=30)
            statuses[response.status_code] += 1

        run()
    assert statuses, "no request was made"
    assert all(code < 500 for code in statuses), statuses
    if mode is POSITIVE and path in MUST_REACH_MODEL:
        assert statuses[200] > 0, f"no generated request reached the model: {statuses}"
