"""The API under hostile input and faults: the status says who is at fault, every body is strict JSON.

Regression tests for what answered 500 (nesting, numbers beyond a double) or blamed the client for a
model fault (400 echoing the exception), and a property test: with a working model, no body, header,
content type, method or path yields a 5xx or a body a strict JSON parser refuses. `make test` runs it
bounded with a fixed seed; `make fuzz` (FUZZ_PROFILE=fuzz) runs it with random seeds and more examples.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lambda_fn import api, runtime
from lambda_fn.schema import Signature
from servingkit.http_local import build_event
from tests.fuzzing import fuzz
from tests.helpers import FakeContext, fake_model, pin_local_model, save_mlflow_model, tiny_pipeline, tiny_row

ROUTES = ("/predict", "/invocations", "/v2/models/tiny/infer")
KINDS = ("1.0", "2.0", "url")


def _strict(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not strict JSON")

    return json.loads(text, parse_constant=refuse)


def call(
    method: str, path: str, raw: bytes, content_type: str | None = "application/json", kind: str = "1.0"
) -> tuple[int, dict[str, str], Any]:
    headers = [("Content-Type", content_type)] if content_type is not None else []
    event = build_event(method, path, headers, raw, payload_version=kind)  # type: ignore[arg-type]
    return answer(event)


def answer(event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    """Run the handler; the body must be strict JSON with the request id (errors: the documented shape)."""
    result = api.handle(event, FakeContext())
    headers = {k.lower(): v[-1] for k, v in result.get("multiValueHeaders", {}).items()} or {
        k.lower(): v for k, v in result.get("headers", {}).items()
    }
    text = result["body"]
    if result.get("isBase64Encoded"):
        text = base64.b64decode(text).decode()
    body = _strict(text)
    assert headers["content-type"].startswith("application/json")
    assert headers["x-request-id"] == event["requestContext"]["requestId"]
    if result["statusCode"] >= 400:
        assert set(body) == {"error", "request_id"} and body["request_id"] == headers["x-request-id"]
        assert set(body["error"]) == {"code", "message", "details"}
    return int(result["statusCode"]), headers, body


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_mlflow_model(tmp_path_factory.mktemp("hostile") / "model", tiny_pipeline())


@pytest.fixture
def env(clean_env: pytest.MonkeyPatch, model_dir: Path, tmp_path: Path) -> pytest.MonkeyPatch:
    return pin_local_model(clean_env, model_dir, tmp_path / "cache")


def _bodies(route: str, value: str) -> bytes:
    """A request for `route` whose `distance` cell is the raw JSON text `value`."""
    row = f'{{"zone": "a", "distance": {value}, "hour": 3}}'
    if route == "/predict":
        return row.encode()
    if route == "/invocations":
        return f'{{"dataframe_records": [{row}]}}'.encode()
    return (
        '{"inputs": [{"name": "zone", "shape": [1], "datatype": "BYTES", "data": ["a"]},'
        f'{{"name": "distance", "shape": [1], "datatype": "FP64", "data": [{value}]}},'
        '{"name": "hour", "shape": [1], "datatype": "INT64", "data": [3]}]}'
    ).encode()


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("depth", [129, 5_000, 200_000])
def test_deeply_nested_json_is_400_malformed_json(env: pytest.MonkeyPatch, route: str, depth: int) -> None:
    raw = ("[" * depth + "]" * depth).encode()
    for body in (raw, _bodies(route, raw.decode())):
        status, _, err = call("POST", route, body)
        assert (status, err["error"]["code"]) == (400, "malformed_json"), err
        assert "nested deeper than 128" in err["error"]["message"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("value", "code"), [("9" * 400, "invalid_input"), ("1e400", "malformed_json")])
def test_numbers_beyond_a_double_are_400(env: pytest.MonkeyPatch, route: str, value: str, code: str) -> None:
    status, _, err = call("POST", route, _bodies(route, value))
    assert (status, err["error"]["code"]) == (400, code), err


def test_a_lone_surrogate_is_refused_not_echoed(env: pytest.MonkeyPatch) -> None:
    env.setenv("ID_FIELD", "id")
    status, _, err = call("POST", "/predict", b'{"id": "\\ud800", "zone": "a", "distance": 1.0, "hour": 3}')
    assert (status, err["error"]["code"]) == (400, "malformed_json")


class Faulty:
    """predict() by the value of x: 666 raises, 777 is NaN; `broken` fails every row, its reference included."""

    def __init__(self, broken: str | None = None) -> None:
        self.broken = broken

    def predict(self, frame: Any) -> Any:
        x = np.asarray(frame, dtype=float).reshape(len(frame), -1)[:, 0]  # a frame, or the array made of it
        if self.broken == "raises":
            raise RuntimeError("libgomp.so.1: cannot open shared object file /opt/secret/path")
        if self.broken == "nan":
            return np.full(len(x), np.nan)
        if (x == 666).any():
            raise ValueError("secret internals: cannot score 666")
        return np.where(x == 777, np.nan, x * 2)


@pytest.fixture
def faulty(clean_env: pytest.MonkeyPatch) -> Any:
    clean_env.setenv("MODEL_URI", "/models/faulty")
    signature = Signature.from_columns([{"name": "x", "type": "double"}])

    def install(broken: str | None = None) -> None:
        model = fake_model(Faulty(broken), signature, name="tiny")
        clean_env.setattr(runtime, "get_model", lambda settings=None: model)

    return install


def _records(*xs: float) -> bytes:
    return json.dumps({"dataframe_records": [{"x": x} for x in xs]}).encode()


@pytest.mark.parametrize("broken", ["raises", "nan"])
def test_a_broken_model_is_500_with_the_request_id_and_no_exception_text(
    faulty: Any, broken: str, caplog: pytest.LogCaptureFixture
) -> None:
    faulty(broken)
    status, headers, err = call("POST", "/invocations", _records(1.0, 2.0))
    assert (status, err["error"]["code"]) == (500, "model_error")
    assert err["request_id"] == headers["x-request-id"] and err["error"]["details"] == []
    assert "secret" not in json.dumps(err) and "libgomp" not in json.dumps(err)
    assert any(r.levelname == "ERROR" and "reference" in r.getMessage() for r in caplog.records)


def test_rows_a_working_model_cannot_score_are_422_naming_them(faulty: Any) -> None:
    faulty()
    assert call("POST", "/invocations", _records(1.0))[2] == {"predictions": [2.0]}
    status, _, err = call("POST", "/invocations", _records(1.0, 666.0, 777.0))
    assert (status, err["error"]["code"]) == (422, "unscorable_rows")
    assert [(d["row"], d["message"]) for d in err["error"]["details"]] == [
        (1, "the model cannot score this row"),
        (2, "the model predicts NaN or Infinity for this row (strict JSON has neither)"),
    ]
    assert "secret" not in json.dumps(err)
    # A lone overflowing row of a real model is the input's fault too (1e308 * coefficient = inf).


def test_a_prediction_that_overflows_is_422_not_null(env: pytest.MonkeyPatch) -> None:
    assert call("POST", "/predict", json.dumps(tiny_row(0)).encode())[0] == 200
    status, _, err = call("POST", "/predict", b'{"zone": "a", "distance": 1e308, "hour": 3}')
    assert (status, err["error"]["code"]) == (422, "unscorable_rows")


# --------------------------------------------------------------------------- property test

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
ANY_JSON = st.recursive(
    JSON_LEAF,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=40,
)
# Cells are mostly of the column's type (three branches in four), so most rows reach the model.
GOOD = {
    "zone": st.sampled_from(["a", "b", "c", "unseen", ""]),
    "distance": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.floats(0, 50)),
    "hour": st.one_of(st.integers(0, 23), st.integers(min_value=-(2**63), max_value=2**63 - 1)),
}
CELL = {name: st.one_of(good, good, good, ANY_JSON) for name, good in GOOD.items()}
ROW = st.one_of(
    st.fixed_dictionaries(CELL),
    st.fixed_dictionaries(CELL),
    st.fixed_dictionaries({}, optional={**CELL, "extra": ANY_JSON}),  # columns missing, an unknown one
)
IDS = st.one_of(st.text(max_size=10), st.integers(), ANY_JSON)
SPECIAL_TEXT = st.sampled_from(["1e400", "-1e400", "9" * 400, "NaN", "Infinity", "[" * 3000, '"\\ud800"', "1e308", "}"])
JSON_TYPES = [
    "application/json",
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON;CHARSET=UTF8",
]
OTHER_TYPES = [
    "application/json; charset=latin-1",
    "text/csv; header=present",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    ";;;",
    "",
]


def _shape(route: str, rows: list[Any], ids: list[Any]) -> Any:
    if route == "/predict":
        instances = [{"id": i, "features": r} for i, r in zip(ids, rows, strict=False)]
        return instances[0] if len(instances) == 1 else {"instances": instances}
    if route == "/invocations":
        cols = ["zone", "distance", "hour"]
        return (
            {"dataframe_records": rows}
            if len(rows) % 2
            else {"dataframe_split": {"columns": cols, "data": [[r.get(c) for c in cols] for r in rows]}}
        )
    n = len(rows)
    return {
        "inputs": [
            {"name": c, "shape": [n], "datatype": dt, "data": [r.get(c) for r in rows]}
            for c, dt in (("zone", "BYTES"), ("distance", "FP64"), ("hour", "INT64"))
        ]
    }


@st.composite
def scoring_request(draw: st.DrawFn) -> tuple[str, str, bytes, str | None]:
    """POST to a scoring route: its own shape around rows mostly of the right types (often spliced with a
    hostile token), or another route's shape, any JSON or any bytes; mostly a JSON content type."""
    route = draw(st.sampled_from(ROUTES))
    rows = draw(st.lists(ROW, min_size=1, max_size=4))
    ids = draw(st.lists(IDS, min_size=len(rows), max_size=len(rows)))
    how = draw(st.sampled_from(["own", "own", "own", "spliced", "spliced", "other route", "any json", "bytes", "csv"]))
    ctype: str | None = draw(st.sampled_from(JSON_TYPES))
    if how == "bytes":
        body = draw(st.binary(max_size=200))
    elif how == "any json":
        body = json.dumps(draw(ANY_JSON)).encode()
    elif how == "csv":
        cells = st.one_of(st.text(max_size=6), st.sampled_from(["1e400", "9" * 400, "nan", "inf", "3", "a"]))
        lines = draw(st.lists(st.lists(cells, min_size=3, max_size=3), max_size=4))
        body = ("zone,distance,hour\n" + "\n".join(",".join(c) for c in lines)).encode()
        ctype = "text/csv"
    else:
        shape_of = route if how != "other route" else draw(st.sampled_from(ROUTES))
        text = json.dumps(_shape(shape_of, rows, ids))
        if how == "spliced":
            at = draw(st.integers(min_value=0, max_value=len(text)))
            text = text[:at] + draw(SPECIAL_TEXT) + text[at:]
        body = text.encode()
    if draw(st.integers(0, 9)) == 0:
        ctype = draw(st.one_of(st.none(), st.sampled_from(OTHER_TYPES), st.text(max_size=30)))
    return "POST", route, body, ctype


@st.composite
def any_request(draw: st.DrawFn) -> tuple[str, str, bytes, str | None]:
    """Any method on any path, known or not, with any body and content type."""
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]))
    path = draw(
        st.one_of(
            st.sampled_from(
                [*ROUTES, "/health", "/ping", "/model", "/openapi.json", "/v2/models/other/infer", "/v2/models/tiny"]
            ),
            st.text(max_size=20).map(lambda t: "/" + t),
        )
    )
    body = draw(st.one_of(st.binary(max_size=100), st.builds(lambda v: json.dumps(v).encode(), ANY_JSON)))
    return (
        method,
        path,
        body,
        draw(st.one_of(st.none(), st.sampled_from(JSON_TYPES + OTHER_TYPES), st.text(max_size=30))),
    )


HEADER_NAME = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"), min_size=1, max_size=12
)
SEEN: dict[str, set[int]] = {}  # statuses per configuration: the test also checks it reached the model


@pytest.mark.fuzz
@fuzz(200)
@given(
    request=st.one_of(scoring_request(), scoring_request(), scoring_request(), any_request()),
    extra_headers=st.lists(st.tuples(HEADER_NAME, st.text(max_size=30)), max_size=3),
    kind=st.sampled_from(KINDS),
    base64_body=st.booleans(),
)
def test_no_request_yields_a_5xx_or_a_body_that_is_not_strict_json(
    api_env: str,
    request: tuple[str, str, bytes, str | None],
    extra_headers: list[tuple[str, str]],
    kind: str,
    base64_body: bool,
) -> None:
    method, path, body, content_type = request
    headers = [("Content-Type", content_type)] if content_type is not None else []
    headers += [(k, v) for k, v in extra_headers if k.lower() != "content-type"]
    event = build_event(method, path, headers, body, payload_version=kind)  # type: ignore[arg-type]
    if base64_body and not event.get("isBase64Encoded"):
        event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    status, _, out = answer(event)
    SEEN.setdefault(api_env, set()).add(status)
    assert status < 500, out
    if status == 200 and method == "POST":
        predictions = out["predictions"] if "predictions" in out else out["outputs"][0]["data"]
        assert all(type(p) is float and math.isfinite(p) for p in predictions), predictions  # never null


@pytest.mark.fuzz
@pytest.mark.parametrize("config", ["no hook", "hook"])
def test_the_property_run_reached_the_model_and_every_kind_of_refusal(config: str) -> None:
    """Runs after the property test (same module, defined later): it must have scored rows, not only refused."""
    seen = SEEN.get(config, set())
    assert {200, 400, 415} <= seen, seen


@pytest.fixture(scope="module", params=["no hook", "hook"])
def api_env(request: pytest.FixtureRequest, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One container for the whole property run (as in Lambda): the tiny model, FEATURES_FIELD and ID_FIELD."""
    mp = pytest.MonkeyPatch()
    from lambda_fn.config import ENV_FIELDS

    for name in ENV_FIELDS:
        mp.delenv(name, raising=False)
    runtime.reset()
    pin_local_model(mp, model_dir, tmp_path_factory.mktemp("cache"))
    mp.setenv("FEATURES_FIELD", "features")
    mp.setenv("ID_FIELD", "id")
    mp.setenv("API_MAX_BODY_BYTES", "65536")
    if request.param == "hook":
        mp.setenv("FEATURE_HOOK", "tests.unit.test_api_hostile:renaming_hook")
    yield request.param
    runtime.reset()
    mp.undo()


def renaming_hook(raw: list[Any]) -> list[Any]:
    """A FEATURE_HOOK that passes objects through and raises on anything else (like a user's would)."""
    return [{k: v for k, v in r.items()} for r in raw]
