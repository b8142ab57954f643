"""The API over real HTTP: the local server turns requests into API Gateway events for the Lambda handler.

Includes MLflow's own scoring client calling /invocations, and the model loaded from (moto) S3.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from servingkit.http_local import serving
from tests.helpers import pin_local_model, tiny_frame, tiny_row
from tests.integration.conftest import Aws


@pytest.fixture
def model_env(clean_env: pytest.MonkeyPatch, tiny_mlflow_dir: Path, tmp_path: Path) -> pytest.MonkeyPatch:
    return pin_local_model(clean_env, tiny_mlflow_dir, tmp_path / "cache", version="1")


@pytest.fixture(params=["1.0", "2.0", "url"])
def url(request: pytest.FixtureRequest, model_env: pytest.MonkeyPatch) -> Iterator[str]:
    with serving(payload_version=request.param) as base:
        yield base


def mlflow_predictions(model_dir: Path, frame: Any) -> list[float]:
    """What MLflow itself predicts for this model and input (its pyfunc loader, not ours)."""
    import mlflow.pyfunc

    return [float(v) for v in mlflow.pyfunc.load_model(str(model_dir)).predict(frame)]


def test_routes_over_http(url: str, tiny_mlflow_dir: Path) -> None:
    health = requests.get(f"{url}/health", timeout=10)
    assert health.status_code == 200 and health.headers["Content-Type"] == "application/json"
    assert health.headers["X-Request-Id"]

    rows = [tiny_row(i) for i in range(6)]
    frame, _ = tiny_frame(6)
    want = mlflow_predictions(tiny_mlflow_dir, frame)
    got = requests.post(f"{url}/invocations", json={"dataframe_records": frame.to_dict("records")}, timeout=10)
    assert got.status_code == 200 and got.json()["predictions"] == pytest.approx(want)

    csv = requests.post(
        f"{url}/invocations", data=frame.to_csv(index=False), headers={"Content-Type": "text/csv"}, timeout=10
    )
    assert csv.status_code == 200 and csv.json()["predictions"] == pytest.approx(want)

    one = requests.post(f"{url}/predict", json=rows[0], timeout=10)
    assert one.status_code == 200 and len(one.json()["predictions"]) == 1

    bad = requests.post(f"{url}/predict", json={"instances": [rows[0], {"zone": 3}]}, timeout=10)
    assert bad.status_code == 400
    body = bad.json()
    assert body["request_id"] == bad.headers["X-Request-Id"]
    assert {(d["row"], d["field"]) for d in body["error"]["details"]} == {(1, "zone"), (1, "distance"), (1, "hour")}

    assert (
        requests.post(f"{url}/predict", data="{", headers={"Content-Type": "application/json"}, timeout=10).status_code
        == 400
    )
    assert requests.post(f"{url}/predict", data={"a": "1"}, timeout=10).status_code == 415  # form-encoded
    assert requests.get(f"{url}/missing", timeout=10).status_code == 404
    wrong = requests.put(f"{url}/invocations", json={}, timeout=10)
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "POST"
    assert requests.get(f"{url}/openapi.json", timeout=10).json()["info"]["title"]


def test_mlflow_scoring_client_calls_invocations(model_env: pytest.MonkeyPatch, tiny_mlflow_dir: Path) -> None:
    """MLflow's own client code (the one `mlflow models serve` is tested with) works unchanged."""
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    frame, _ = tiny_frame(25, seed=3)
    with serving() as base:
        parts = urlsplit(base)
        client = ScoringServerClient(parts.hostname, parts.port)  # type: ignore[no-untyped-call]  # MLflow's, untyped
        client.wait_server_ready(timeout=10)  # type: ignore[no-untyped-call]  # polls GET /ping
        response = client.invoke(frame)
    assert response.get_predictions().iloc[:, 0].tolist() == pytest.approx(mlflow_predictions(tiny_mlflow_dir, frame))


def test_mlflow_deployments_client_predicts_and_lists_the_endpoint(
    model_env: pytest.MonkeyPatch, tiny_mlflow_dir: Path
) -> None:
    """`mlflow.deployments.get_deploy_client("http://...")`, MLflow's own client for an HTTP target, unchanged."""
    from mlflow.deployments import get_deploy_client

    frame, _ = tiny_frame(12, seed=5)
    with serving() as base:
        client = get_deploy_client(base)  # type: ignore[no-untyped-call]  # MLflow's, untyped
        endpoints = client.list_endpoints()  # GET /api/2.0/endpoints/
        endpoint = client.get_endpoint("tiny")  # GET /api/2.0/endpoints/tiny
        split = client.predict(endpoint="tiny", inputs={"dataframe_split": frame.to_dict("split")})
        records = client.predict(endpoint="tiny", inputs={"dataframe_records": frame.to_dict("records")})
        with pytest.raises(Exception, match="404") as unknown:
            client.predict(endpoint="other", inputs={"dataframe_records": frame.to_dict("records")})
    assert [e.name for e in endpoints] == ["tiny"]
    assert endpoint.name == "tiny" and endpoint.endpoint_url == f"{base}/endpoints/tiny/invocations"
    want = mlflow_predictions(tiny_mlflow_dir, frame)
    assert split["predictions"] == pytest.approx(want) and records["predictions"] == pytest.approx(want)
    assert "model_not_found" in str(unknown.value)


def test_open_inference_protocol_over_http(url: str) -> None:
    """Server metadata, health and the versioned routes, as a KServe-style client calls them."""
    server = requests.get(f"{url}/v2", timeout=10)
    assert server.status_code == 200 and server.json()["name"] == "servingkit"
    assert requests.get(f"{url}/v2/health/live", timeout=10).json() == {"live": True}
    assert requests.get(f"{url}/v2/health/ready", timeout=10).json() == {"ready": True}
    assert requests.get(f"{url}/v2/models/tiny/versions/1/ready", timeout=10).json() == {"name": "tiny", "ready": True}
    inputs: list[dict[str, Any]] = [
        {"name": "zone", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
        {"name": "distance", "shape": [2], "datatype": "FP64", "data": [1.5, 2.5]},
        {"name": "hour", "shape": [2], "datatype": "INT64", "data": [3, 4]},
    ]
    versioned = requests.post(f"{url}/v2/models/tiny/versions/1/infer", json={"inputs": inputs}, timeout=10)
    plain = requests.post(f"{url}/v2/models/tiny/infer", json={"inputs": inputs}, timeout=10)
    assert versioned.status_code == 200 and versioned.json()["outputs"] == plain.json()["outputs"]
    missing = requests.get(f"{url}/v2/models/tiny/versions/2", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_version_not_found"


def test_concurrent_clients_all_succeed(model_env: pytest.MonkeyPatch) -> None:
    with serving() as base:
        with requests.Session() as warm:
            assert warm.get(f"{base}/health", timeout=10).status_code == 200

        def one(i: int) -> tuple[int, Any]:
            r = requests.post(f"{base}/invocations", json={"dataframe_records": [tiny_row(i)]}, timeout=30)
            return r.status_code, r.json()

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, range(64)))
    assert [s for s, _ in results] == [200] * 64
    assert all(len(b["predictions"]) == 1 for _, b in results)


def test_model_from_s3_and_stream_payload_mapping(deployed: Aws) -> None:
    """The deployed shape: model fetched from S3 and pinned; /predict reads FEATURES_FIELD and ID_FIELD."""
    with serving(payload_version="2.0") as base:
        info = requests.get(f"{base}/model", timeout=30).json()
        assert info["format"] == "mlflow-sklearn-skops"
        payloads: list[dict[str, Any]] = [{"id": f"r{i}", "features": tiny_row(i)} for i in range(3)]
        out = requests.post(f"{base}/predict", json={"instances": payloads}, timeout=30)
    assert out.status_code == 200, out.text
    assert out.json()["ids"] == ["r0", "r1", "r2"]
    assert out.json()["model"]["sha256"] == info["sha256"]


def test_unavailable_model_is_503_over_http(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("MODEL_URI", str(tmp_path / "nothing-here"))
    with serving() as base:
        r = requests.post(f"{base}/invocations", json={"instances": [tiny_row(0)]}, timeout=10)
    assert r.status_code == 503
    assert r.json()["request_id"] == r.headers["X-Request-Id"]
    assert "nothing-here" not in r.text


def test_local_gateway_refuses_oversized_bodies_like_api_gateway(model_env: pytest.MonkeyPatch) -> None:
    model_env.setenv("API_MAX_BODY_BYTES", "1000")
    big = json.dumps({"dataframe_records": [tiny_row(i) for i in range(100)]})
    with serving() as base:
        r = requests.post(f"{base}/invocations", data=big, headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def test_local_server_answers_502_when_the_handler_raises_and_413_over_10_mib() -> None:
    """What API Gateway itself does, independent of the handler."""
    calls: list[dict[str, Any]] = []

    def broken(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(event)
        raise RuntimeError("boom")

    with serving(broken) as base:
        crash = requests.get(f"{base}/anything", timeout=10)
        huge = requests.post(f"{base}/invocations", data=b"x" * (10 * 1024 * 1024 + 1), timeout=30)
    assert crash.status_code == 502 and crash.json() == {"message": "Internal server error"}
    assert huge.status_code == 413
    assert len(calls) == 1, "the oversized body never reached the handler"
    assert calls[0]["requestContext"]["identity"]["sourceIp"] == "127.0.0.1"
