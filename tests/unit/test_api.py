"""The API handler in-process, on REST v1, HTTP API v2 and function URL events, with a tiny real model."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from lambda_fn import api, runtime
from lambda_fn.model_store import artifact_sha256
from servingkit.http_local import build_event
from tests.helpers import FakeContext, pin_local_model, save_joblib, save_mlflow_model, tiny_pipeline, tiny_row

KINDS = ("1.0", "2.0", "url")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def tiny_hook(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A FEATURE_HOOK for the tiny model: raw trips → its columns (KeyError on a missing field)."""
    return [{"zone": r["area"], "distance": r["km"], "hour": r["hour"]} for r in raw]


def strict_tiny_hook(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """tiny_hook naming what it refuses (`FeatureError`), as the hook contract asks."""
    from lambda_fn.hooks import FeatureError

    for r in raw:
        problems = {k: "is missing" for k in ("area", "km", "hour") if k not in r}
        if not isinstance(r.get("km", 0.0), float):
            problems["km"] = "must be a number"
        if problems:
            raise FeatureError(problems)
    return tiny_hook(raw)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_mlflow_model(tmp_path_factory.mktemp("api") / "model", tiny_pipeline())


@pytest.fixture
def env(clean_env: pytest.MonkeyPatch, model_dir: Path, tmp_path: Path) -> pytest.MonkeyPatch:
    return pin_local_model(clean_env, model_dir, tmp_path / "cache", version="7")


def call(
    method: str,
    path: str,
    body: Any = None,
    *,
    kind: str = "1.0",
    content_type: str | None = "application/json",
    raw: bytes | None = None,
) -> tuple[int, dict[str, str], Any]:
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    headers = [("Content-Type", content_type)] if content_type and data else []
    event = build_event(method, path, headers, data, payload_version=kind)  # type: ignore[arg-type]
    result = api.handle(event, FakeContext())
    hdrs = {k: v[-1] for k, v in result.get("multiValueHeaders", {}).items()} or result.get("headers", {})
    text = result["body"]
    if result.get("isBase64Encoded"):
        text = base64.b64decode(text).decode()
    assert hdrs["X-Request-Id"] == event["requestContext"]["requestId"]
    return result["statusCode"], hdrs, json.loads(text)


def expected(rows: list[dict[str, Any]]) -> list[float]:
    import pandas as pd

    return [float(v) for v in tiny_pipeline().predict(pd.DataFrame(rows))]


@pytest.mark.parametrize("kind", KINDS)
def test_health_model_and_predict_on_every_payload_format(env: pytest.MonkeyPatch, kind: str) -> None:
    status, _, body = call("GET", "/health", kind=kind)
    assert status == 200 and body["status"] == "ok"
    assert body["model"]["name"] == "tiny" and body["model"]["version"] == "7"

    status, _, info = call("GET", "/model", kind=kind)
    assert status == 200
    assert [c["name"] for c in info["signature"]["inputs"]] == ["zone", "distance", "hour"]
    assert info["name"] == "tiny"


def test_model_reports_identity_signature_and_load_time(env: pytest.MonkeyPatch, model_dir: Path) -> None:
    status, _, info = call("GET", "/model")
    assert status == 200
    assert info["sha256"] == artifact_sha256(model_dir)
    assert info["format"] == "mlflow-sklearn-skops"
    assert [(c["name"], c["type"]) for c in info["signature"]["inputs"]] == [
        ("zone", "string"),
        ("distance", "double"),
        ("hour", "long"),
    ]
    assert info["load_seconds"] > 0 and info["loaded_at"].endswith("+00:00")
    assert "uri" not in info, "the bucket and key are not for clients"


@pytest.mark.parametrize("kind", KINDS)
def test_predict_one_object_and_a_batch(env: pytest.MonkeyPatch, kind: str) -> None:
    rows = [tiny_row(i) for i in range(5)]
    status, _, one = call("POST", "/predict", rows[0], kind=kind)
    assert status == 200
    assert one["predictions"] == pytest.approx(expected(rows[:1]))
    assert one["model"] == {"name": "tiny", "version": "7", "sha256": one["model"]["sha256"]}
    assert "ids" not in one

    status, _, many = call("POST", "/predict", {"instances": rows}, kind=kind)
    assert status == 200
    assert many["predictions"] == pytest.approx(expected(rows))


def test_predict_uses_the_stream_payload_mapping_and_hook(env: pytest.MonkeyPatch) -> None:
    env.setenv("FEATURES_FIELD", "trip")
    env.setenv("ID_FIELD", "trip_id")
    env.setenv("FEATURE_HOOK", "tests.unit.test_api:tiny_hook")
    payloads: list[dict[str, Any]] = [
        {"trip_id": f"t{i}", "trip": {"area": "abc"[i % 3], "km": 2.0 + i, "hour": i}} for i in range(3)
    ]
    status, _, body = call("POST", "/predict", {"instances": payloads})
    assert status == 200
    assert body["ids"] == ["t0", "t1", "t2"]
    cols = tiny_hook([p["trip"] for p in payloads])
    assert body["predictions"] == pytest.approx(expected(cols))

    bad = [payloads[0], {"trip_id": "t9"}, {"trip_id": "t8", "trip": {"area": "a", "hour": 1}}]
    status, _, err = call("POST", "/predict", {"instances": bad})
    assert status == 400
    assert err["error"]["details"] == [{"row": 1, "field": "trip", "message": "missing field 'trip' (the features)"}]

    status, _, err = call("POST", "/predict", {"instances": [payloads[0], bad[2]]})
    assert status == 400
    assert [(d["row"], d["field"]) for d in err["error"]["details"]] == [(1, "km")]


def test_hook_errors_list_every_bad_row_by_field_without_its_value(env: pytest.MonkeyPatch) -> None:
    env.setenv("FEATURES_FIELD", "trip")
    env.setenv("FEATURE_HOOK", "tests.unit.test_api:strict_tiny_hook")
    secret = "SECRET-VALUE"
    # A fresh container: the hook has accepted nothing yet, and refuses every row; all are still listed.
    bad = [{"trip": {"area": "a", "km": secret, "hour": 1}}, {"trip": {"km": 1.0}}]
    status, _, err = call("POST", "/predict", {"instances": bad})
    assert status == 400 and err["error"]["code"] == "invalid_input"
    assert [(d["row"], d["field"]) for d in err["error"]["details"]] == [(0, "km"), (1, "area"), (1, "hour")]
    assert secret not in json.dumps(err)
    good = {"trip": {"area": "b", "km": 2.0, "hour": 3}}
    many = [good if i % 3 == 0 else bad[0] for i in range(300)]
    status, _, err = call("POST", "/predict", {"instances": many})
    assert status == 400 and err["error"]["message"] == "the feature hook rejected 200 of 300 row(s)"
    assert len(err["error"]["details"]) == 100 and err["error"]["details_total"] == 200
    assert [d["row"] for d in err["error"]["details"][:3]] == [1, 2, 4]
    assert call("POST", "/predict", {"instances": [good]})[0] == 200


def test_invalid_rows_are_all_reported_with_row_and_field(env: pytest.MonkeyPatch) -> None:
    rows = [
        tiny_row(0),
        {"zone": "a", "distance": "far", "hour": 3},
        {"zone": "b", "hour": 2},
        {**tiny_row(3), "colour": "red"},
        {"zone": "c", "distance": 1.0, "hour": 2.5},
    ]
    status, _, err = call("POST", "/invocations", {"dataframe_records": rows})
    assert status == 400
    assert err["error"]["code"] == "invalid_input"
    got = {(d["row"], d["field"]) for d in err["error"]["details"]}
    assert got == {(1, "distance"), (2, "distance"), (3, "colour"), (4, "hour")}
    assert all(d["message"] for d in err["error"]["details"])
    assert err["request_id"]


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_split": {"columns": ["zone", "distance", "hour"], "data": [["a", 1.5, 3], ["b", 2.5, 4]]}},
        {"dataframe_split": {"data": [["a", 1.5, 3], ["b", 2.5, 4]]}},
        {"dataframe_records": [{"zone": "a", "distance": 1.5, "hour": 3}, {"zone": "b", "distance": 2.5, "hour": 4}]},
        {"instances": [{"zone": "a", "distance": 1.5, "hour": 3}, {"zone": "b", "distance": 2.5, "hour": 4}]},
        {"instances": [["a", 1.5, 3], ["b", 2.5, 4]]},
        {"inputs": {"zone": ["a", "b"], "distance": [1.5, 2.5], "hour": [3, 4]}},
        {"inputs": [{"zone": "a", "distance": 1.5, "hour": 3}, {"zone": "b", "distance": 2.5, "hour": 4}]},
    ],
    ids=["split", "split-no-columns", "records", "instances", "instances-lists", "inputs-columns", "inputs-records"],
)
def test_invocations_accepts_every_mlflow_json_format(env: pytest.MonkeyPatch, body: dict[str, Any]) -> None:
    status, _, out = call("POST", "/invocations", body)
    assert status == 200
    assert out == {
        "predictions": pytest.approx(
            expected(
                [tiny_row(0) | {"zone": "a", "distance": 1.5, "hour": 3}, {"zone": "b", "distance": 2.5, "hour": 4}]
            )
        )
    }


def test_invocations_csv(env: pytest.MonkeyPatch) -> None:
    import pandas as pd

    frame = pd.DataFrame([tiny_row(i) for i in range(4)])
    status, _, out = call("POST", "/invocations", raw=frame.to_csv(index=False).encode(), content_type="text/csv")
    assert status == 200 and out["predictions"] == pytest.approx(expected(frame.to_dict("records")))
    # With the index column, as DataFrame.to_csv() writes by default.
    status, _, out = call("POST", "/invocations", raw=frame.to_csv().encode(), content_type="text/csv; charset=utf-8")
    assert status == 200 and len(out["predictions"]) == 4

    status, _, err = call("POST", "/invocations", raw=b"zone,distance,hour\na,near,3\n", content_type="text/csv")
    assert status == 400
    assert [(d["row"], d["field"]) for d in err["error"]["details"]] == [(0, "distance")]


@pytest.mark.parametrize("kind", KINDS)
def test_open_inference_protocol(env: pytest.MonkeyPatch, kind: str) -> None:
    status, _, meta = call("GET", "/v2/models/tiny", kind=kind)
    assert status == 200
    assert meta["name"] == "tiny" and meta["versions"] == ["7"]
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("zone", "BYTES"),
        ("distance", "FP64"),
        ("hour", "INT64"),
    ]
    request = {
        "id": "req-1",
        "inputs": [
            {"name": "zone", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
            {"name": "distance", "shape": [2, 1], "datatype": "FP64", "data": [[1.5], [2.5]]},
            {"name": "hour", "shape": [2], "datatype": "INT64", "data": [3, 4]},
        ],
    }
    status, _, out = call("POST", "/v2/models/tiny/infer", request, kind=kind)
    assert status == 200
    assert out["model_name"] == "tiny" and out["id"] == "req-1"
    (output,) = out["outputs"]
    assert output["datatype"] == "FP64" and output["shape"] == [2]
    assert output["data"] == pytest.approx(
        expected([{"zone": "a", "distance": 1.5, "hour": 3}, {"zone": "b", "distance": 2.5, "hour": 4}])
    )
    assert call("GET", "/v2/models/tiny/ready", kind=kind)[2] == {"name": "tiny", "ready": True}
    assert call("GET", "/v2/health/ready", kind=kind)[0] == 200
    assert call("GET", "/v2/health/live", kind=kind)[0] == 200


def test_open_inference_protocol_errors_name_the_input(env: pytest.MonkeyPatch) -> None:
    status, _, err = call("POST", "/v2/models/other/infer", {"inputs": []})
    assert status == 404 and err["error"]["code"] == "model_not_found"
    request = {
        "inputs": [
            {"name": "zone", "shape": [1], "datatype": "FP64", "data": [1.0]},
            {"name": "distance", "shape": [1], "datatype": "FP64", "data": [1.5]},
            {"name": "speed", "shape": [1], "datatype": "FP64", "data": [9.0]},
        ]
    }
    status, _, err = call("POST", "/v2/models/tiny/infer", request)
    assert status == 400
    assert {d["field"] for d in err["error"]["details"]} == {"zone", "speed"}
    request["inputs"] = request["inputs"][1:2]
    status, _, err = call("POST", "/v2/models/tiny/infer", request)
    assert status == 400 and {d["field"] for d in err["error"]["details"]} == {"zone", "hour"}


@pytest.mark.parametrize("kind", KINDS)
def test_open_inference_protocol_server_metadata_and_versioned_routes(env: pytest.MonkeyPatch, kind: str) -> None:
    import tomllib

    status, _, server = call("GET", "/v2", kind=kind)
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    assert status == 200 and server == {"name": "servingkit", "version": project["version"], "extensions": []}
    assert call("GET", "/v2/models/tiny/versions/7", kind=kind)[2] == call("GET", "/v2/models/tiny", kind=kind)[2]
    assert call("GET", "/v2/models/tiny/versions/7/ready", kind=kind)[2] == {"name": "tiny", "ready": True}
    request = {
        "inputs": [
            {**V2_ZONE},
            {**V2_ZONE, "name": "distance", "datatype": "FP64", "data": [1.5]},
            {**V2_ZONE, "name": "hour", "datatype": "INT64", "data": [3]},
        ]
    }
    status, _, out = call("POST", "/v2/models/tiny/versions/7/infer", request, kind=kind)
    assert status == 200 and out["model_version"] == "7"
    assert out["outputs"][0]["data"] == pytest.approx(expected([{"zone": "a", "distance": 1.5, "hour": 3}]))


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        ("GET", "/v2/models/tiny/versions/8", "model_version_not_found"),
        ("GET", "/v2/models/tiny/versions/8/ready", "model_version_not_found"),
        ("POST", "/v2/models/tiny/versions/8/infer", "model_version_not_found"),
        ("GET", "/v2/models/other/versions/7", "model_not_found"),
        ("GET", "/v2/models/other/versions/7/ready", "model_not_found"),
        ("POST", "/v2/models/other/versions/7/infer", "model_not_found"),
        ("GET", "/v2/models/other/ready", "model_not_found"),
        ("GET", "/v2/models/tiny/versions", "not_found"),
    ],
)
def test_open_inference_protocol_unknown_model_or_version_is_404(
    env: pytest.MonkeyPatch, method: str, path: str, code: str
) -> None:
    status, headers, err = call(method, path, {"inputs": []} if method == "POST" else None)
    assert status == 404 and err["error"]["code"] == code
    assert err["request_id"] == headers["X-Request-Id"] and err["error"]["details"] == []


V2_ZONE = {"name": "zone", "shape": [1], "datatype": "BYTES", "data": ["a"]}


@pytest.mark.parametrize(
    ("path", "body", "fields"),
    [
        ("/v2/models/tiny/infer", {"inputs": [{**V2_ZONE, "datatype": "SECRET-VALUE"}]}, ["inputs[0].datatype"]),
        ("/v2/models/tiny/infer", {"inputs": [{**V2_ZONE, "shape": [1, 3]}]}, ["inputs[0].shape"]),
        ("/v2/models/tiny/infer", {"inputs": [{**V2_ZONE, "shape": [True]}]}, ["inputs[0].shape[0]"]),
        ("/v2/models/tiny/infer", {"inputs": [{**V2_ZONE, "shape": [2]}]}, ["inputs[0].data"]),
        ("/v2/models/tiny/infer", {"inputs": [V2_ZONE, {**V2_ZONE, "data": ["SECRET-VALUE"]}]}, ["inputs"]),
        ("/v2/models/tiny/infer", {"inputs": [{"shape": [1], "datatype": "BYTES", "data": [1]}]}, ["inputs[0].name"]),
        ("/v2/models/tiny/infer", {"inputs": [V2_ZONE], "id": ["SECRET-VALUE"]}, ["id"]),
        ("/invocations", {"dataframe_split": {"columns": ["zone", "zone"], "data": []}}, ["dataframe_split.columns"]),
        ("/invocations", {"dataframe_split": {"data": "SECRET-VALUE"}}, ["dataframe_split.data"]),
        ("/invocations", {"instances": "SECRET-VALUE"}, ["instances"]),
        ("/invocations", {"inputs": {"zone": ["a", "b"], "hour": [1]}}, ["inputs"]),
        ("/invocations", {"dataframe_records": [], "instances": []}, [None]),
        ("/invocations", {"dataframe_records": [tiny_row(0)], "params": "SECRET-VALUE"}, ["params"]),
        ("/predict", {"instances": ["SECRET-VALUE"]}, ["instances[0]"]),
        ("/predict", ["SECRET-VALUE"], [None]),
    ],
)
def test_malformed_bodies_name_the_field_by_its_path_and_never_echo_it(
    env: pytest.MonkeyPatch, path: str, body: Any, fields: list[str | None]
) -> None:
    """The request models validate every body; their errors become the one error shape (errors.invalid_body)."""
    status, _, err = call("POST", path, body)
    assert (status, err["error"]["code"]) == (400, "invalid_input"), err
    assert [d["field"] for d in err["error"]["details"]] == fields
    assert all(d["message"] and d["row"] is None for d in err["error"]["details"])
    assert "SECRET-VALUE" not in json.dumps(err)


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "code"),
    [
        (b'{"dataframe_records": [', "application/json", 400, "malformed_json"),
        (b'{"instances": [{"zone": "a", "distance": NaN, "hour": 1}]}', "application/json", 400, "malformed_json"),
        (b"\xff\xfe", "application/json", 400, "malformed_body"),
        (b"[1, 2]", "application/json", 400, "invalid_input"),
        (b'{"records": []}', "application/json", 400, "invalid_input"),
        (b'{"dataframe_records": [], "instances": []}', "application/json", 400, "invalid_input"),
        (b'{"dataframe_records": []}', "application/json", 400, "invalid_input"),
        (b"zone=a", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b'{"instances": []}', "application/json; charset=latin-1", 415, "unsupported_media_type"),
        (b"<xml/>", "application/xml", 415, "unsupported_media_type"),
    ],
)
def test_bad_requests_are_4xx_never_5xx(
    env: pytest.MonkeyPatch, raw: bytes, content_type: str, status: int, code: str
) -> None:
    got, _, err = call("POST", "/invocations", raw=raw, content_type=content_type)
    assert (got, err["error"]["code"]) == (status, code)
    assert err["error"]["message"]


def test_body_over_the_limit_is_413_before_parsing(env: pytest.MonkeyPatch) -> None:
    env.setenv("API_MAX_BODY_BYTES", "200")
    small = {"dataframe_records": [tiny_row(0)]}
    assert call("POST", "/invocations", small)[0] == 200
    big = {"dataframe_records": [tiny_row(i) for i in range(20)]}
    status, _, err = call("POST", "/invocations", big)
    assert status == 413 and err["error"]["code"] == "payload_too_large"
    status, _, _ = call("POST", "/invocations", raw=b"{" * 300)  # not even parsed
    assert status == 413


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_route_is_404_and_wrong_method_405(env: pytest.MonkeyPatch, kind: str) -> None:
    status, _, err = call("GET", "/nowhere", kind=kind)
    assert status == 404 and err["error"]["code"] == "not_found"
    status, headers, err = call("GET", "/predict", kind=kind)
    assert status == 405 and headers["Allow"] == "POST"
    status, headers, _ = call("DELETE", "/v2/models/tiny", kind=kind)
    assert status == 405 and headers["Allow"] == "GET"


def test_model_that_cannot_load_is_503_with_request_id_and_no_details(
    env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    env.setenv("MODEL_URI", "/nonexistent/secret-model-path")
    env.delenv("MODEL_SHA256")
    for method, path, body in (("GET", "/health", None), ("POST", "/invocations", {"instances": [tiny_row(0)]})):
        status, _, err = call(method, path, body)
        assert status == 503 and err["error"]["code"] == "model_unavailable"
        assert err["request_id"]
        assert "secret-model-path" not in json.dumps(err)


def test_a_feature_hook_that_cannot_load_is_a_misconfiguration(env: pytest.MonkeyPatch) -> None:
    env.setenv("FEATURE_HOOK", "no_such_module_xyz:f")
    status, _, err = call("POST", "/predict", {"instances": [{"trip": {}}]})
    assert status == 503 and err["error"]["code"] == "service_unavailable"
    assert "no_such_module_xyz" not in json.dumps(err)


def test_missing_configuration_is_503_not_500(clean_env: pytest.MonkeyPatch) -> None:
    status, _, err = call("GET", "/health")
    assert status == 503 and err["error"]["code"] == "service_unavailable"
    assert "MODEL_URI" not in json.dumps(err)
    # Routes that need no model still answer.
    assert call("GET", "/v2/health/live")[0] == 200


def test_rows_a_signatureless_model_cannot_score_are_422_naming_them_without_its_error(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = save_joblib(tmp_path / "model.joblib")
    clean_env.setenv("MODEL_URI", str(path))
    clean_env.setenv("MODEL_SHA256", artifact_sha256(path))
    ok = {"dataframe_records": [tiny_row(0), tiny_row(1)]}
    status, _, out = call("POST", "/invocations", ok)
    assert status == 200 and out["predictions"] == pytest.approx(expected([tiny_row(0), tiny_row(1)]))
    # Nothing to check up front: the rows the model fails on are named (it still scores its reference row,
    # so they are the input's fault), its error text stays in the logs...
    status, _, err = call("POST", "/invocations", {"dataframe_records": [tiny_row(0), {"x": 1}]})
    assert status == 422 and err["error"]["code"] == "unscorable_rows"
    assert [(d["row"], d["field"]) for d in err["error"]["details"]] == [(1, None)]
    assert err["error"]["details"][0]["message"] == "the model cannot score this row"
    logged = [str(getattr(r, "rows", "")) for r in caplog.records]
    assert any("model failed on this row: ValueError" in line for line in logged)
    assert "ValueError" not in json.dumps(err)
    # ...and so is a batch the model rejects whole, now that it has shown it can score.
    status, _, err = call("POST", "/invocations", {"dataframe_records": [{"x": i} for i in range(10)]})
    assert status == 422 and err["error"]["code"] == "unscorable_rows"
    assert [d["row"] for d in err["error"]["details"]] == list(range(10))


def test_api_needs_no_stream_outputs_and_runs_through_the_lambda_handler(env: pytest.MonkeyPatch) -> None:
    from lambda_fn.handler import api_handler

    env.delenv("OUTPUT_STREAM_NAME", raising=False)
    env.delenv("DLQ_URL", raising=False)
    event = build_event("POST", "/predict", [("content-type", "application/json")], json.dumps(tiny_row(2)).encode())
    result = api_handler(event, FakeContext())
    assert result["statusCode"] == 200
    assert json.loads(result["body"])["predictions"] == pytest.approx(expected([tiny_row(2)]))


def test_base64_encoded_body_is_decoded(env: pytest.MonkeyPatch) -> None:
    event = build_event("POST", "/invocations", [("Content-Type", "text/csv")], b"zone,distance,hour\na,1.5,3\n")
    event["body"] = base64.b64encode(event["body"].encode()).decode()
    event["isBase64Encoded"] = True
    result = api.handle(event, FakeContext())
    assert result["statusCode"] == 200, result["body"]


def test_aws_sample_http_api_event(env: pytest.MonkeyPatch) -> None:
    """An HTTP API v2 event as AWS documents it (named stage, explicit route key), not built by our helper."""
    event = {
        "version": "2.0",
        "routeKey": "POST /invocations",
        "rawPath": "/invocations",
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "abc123.execute-api.us-east-1.amazonaws.com"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "http": {
                "method": "POST",
                "path": "/invocations",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.1",
                "userAgent": "t",
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "POST /invocations",
            "stage": "$default",
            "time": "10/Mar/2026:00:03:59 +0000",
            "timeEpoch": 1773100000000,
        },
        "body": json.dumps({"dataframe_records": [tiny_row(1)]}),
        "isBase64Encoded": False,
    }
    result = api.handle(event, FakeContext())
    assert result["statusCode"] == 200
    assert result["headers"]["X-Request-Id"] == "JKJaXmPLvHcESHA="


def test_openapi_document_is_served_and_the_repo_copy_is_current(env: pytest.MonkeyPatch) -> None:
    from lambda_fn.api import openapi_json

    generic = json.loads(openapi_json())
    assert DOCS.read_text() == openapi_json(), "docs/openapi.json is stale: python -m lambda_fn.api > docs/openapi.json"
    assert generic["openapi"].startswith("3.")
    documented = {(m.upper(), p) for p, ops in generic["paths"].items() for m in ops}
    routed = {(m, re.sub(r"<(\w+)>", r"{\1}", r)) for m, r, _ in api.ROUTES}
    assert documented == routed
    for ops in generic["paths"].values():
        for op in ops.values():
            assert {"200", "404", "405"} <= set(op["responses"])
            assert all(r["content"]["application/json"]["schema"] for r in op["responses"].values())

    status, _, served = call("GET", "/openapi.json")
    assert status == 200
    assert served["paths"] == generic["paths"]
    row = served["components"]["schemas"]["ModelRow"]
    assert row["properties"] == {
        "zone": {"type": "string"},
        "distance": {"type": "number"},
        "hour": {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
    }
    assert row["required"] == ["zone", "distance", "hour"] and row["additionalProperties"] is False


def test_openapi_is_served_even_when_the_model_is_unavailable(env: pytest.MonkeyPatch) -> None:
    env.setenv("MODEL_URI", "/nonexistent/model")
    status, _, doc = call("GET", "/openapi.json")
    assert status == 200 and "ModelRow" not in doc["components"]["schemas"]


class RecordingMetrics:
    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}

    def add_metric(self, name: str, unit: Any, value: float) -> None:
        self.values.setdefault(name, []).append(value)


def test_every_request_emits_traffic_latency_and_error_class_metrics(env: pytest.MonkeyPatch) -> None:
    from lambda_fn.config import Metric

    metrics = RecordingMetrics()
    for path, body in (("/invocations", {"instances": [tiny_row(0)]}), ("/invocations", {"instances": [{}]})):
        event = build_event("POST", path, [("Content-Type", "application/json")], json.dumps(body).encode())
        api.handle(event, FakeContext(), metrics)
    env.setenv("MODEL_URI", "/nonexistent/model")
    runtime.reset()  # a new container with a model that cannot load
    api.handle(build_event("GET", "/health", [], b""), FakeContext(), metrics)
    assert metrics.values[Metric.API_REQUESTS] == [1, 1, 1]
    assert metrics.values[Metric.API_CLIENT_ERRORS] == [0, 1, 0]
    assert metrics.values[Metric.API_SERVER_ERRORS] == [0, 0, 1]
    assert all(ms > 0 for ms in metrics.values[Metric.API_LATENCY])
