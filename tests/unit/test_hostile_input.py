"""Regression tests for the holes a hostile producer found (issue 11): each one, through process_batch and
sinks that check what Kinesis and SQS check. The property tests (test_stream_properties) close the classes."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import numpy as np
import pytest

from lambda_fn.outputs import DLQ_BODY_MAX
from lambda_fn.records import KPL_MAGIC, MAX_JSON_DEPTH, Reason, decode_event
from lambda_fn.schema import Signature
from lambda_fn.scoring import ModelBatchError
from lambda_fn.sinks import KinesisSink, MemorySink, RetryPolicy, SqsSink
from lambda_fn.stream import StreamRuntime, process_batch
from lambda_fn.wire import ID_MAX_BYTES, bounded_json, partition_key
from tests.helpers import fake_model, kinesis_event, kinesis_record
from tests.service_fakes import StrictKinesis, StrictSqs, strict_json

SIG = Signature.from_columns([{"name": "x", "type": "double"}])
NO_SLEEP = RetryPolicy(max_attempts=3, base_delay_s=0, sleep=lambda _s: None)


class Doubler:
    def predict(self, x: Any) -> Any:
        return x[:, 0] * 2


class Runtime:
    """process_batch against strict fake services; outputs parsed strictly."""

    def __init__(self, estimator: Any = None, sqs: StrictSqs | None = None) -> None:
        self.kinesis = StrictKinesis()
        self.sqs = sqs or StrictSqs()
        model = fake_model(estimator or Doubler(), SIG)
        self.rt = StreamRuntime(
            model=lambda: model,
            output=KinesisSink(self.kinesis, "out", NO_SLEEP),
            dlq=SqsSink(self.sqs, "https://dlq", NO_SLEEP),
            features_field="f",
            id_field="id",
        )
        self.metrics: dict[str, float] = {}

    def add_metric(self, name: str, unit: Any, value: float) -> None:
        self.metrics[name] = self.metrics.get(name, 0) + value

    def run(self, items: list[Any]) -> dict[str, Any]:
        response = process_batch(kinesis_event(items), self.rt, self)
        self.predictions = self.kinesis.json()
        self.dead_letters = self.sqs.json()
        assert all(len(body) <= DLQ_BODY_MAX for _, body in self.sqs.messages)
        return response


def test_json_nested_far_deeper_than_python_recursion_is_one_dead_letter() -> None:
    for depth in (1_000, 100_000):
        r = Runtime()
        deep = b'{"id":"a","f":' + b"[" * depth + b"]" * depth + b"}"
        assert r.run([deep, {"id": "b", "f": {"x": 1.0}}]) == {"batchItemFailures": []}
        assert [d["reason"] for d in r.dead_letters] == [Reason.NOT_JSON]
        assert f"deeper than {MAX_JSON_DEPTH}" in r.dead_letters[0]["detail"]
        assert [p["id"] for p in r.predictions] == ["b"]


def test_depth_at_the_limit_is_accepted() -> None:
    ok = b'{"id":"a","f":{"x":1.0,"deep":' + b"[" * (MAX_JSON_DEPTH - 2) + b"]" * (MAX_JSON_DEPTH - 2) + b"}}"
    r = Runtime()
    r.run([ok])
    assert [p["id"] for p in r.predictions] == ["a"]


def test_an_integer_beyond_float_range_in_a_double_column_is_a_schema_violation() -> None:
    r = Runtime()
    r.run([b'{"id":"a","f":{"x":' + b"9" * 400 + b"}}", b'{"id":"b","f":{"x":' + b"9" * 300 + b"}}"])
    assert [d["reason"] for d in r.dead_letters] == [Reason.SCHEMA]
    assert [p["id"] for p in r.predictions] == ["b"]  # 1e300 fits a double


def test_a_date_pandas_cannot_hold_fails_its_row_not_the_batch() -> None:
    sig = Signature.from_columns([{"name": "x", "type": "double"}, {"name": "t", "type": "datetime"}])

    class M:
        def predict(self, x: Any) -> Any:
            return [1.0] * len(x)

    out, dlq = MemorySink(), MemorySink()
    model = fake_model(M(), sig)
    rt = StreamRuntime(model=lambda: model, output=out, dlq=dlq, features_field="f", id_field="id")
    # An ISO week date: datetime.fromisoformat reads it, pandas' ISO8601 parser does not.
    rows = [{"id": "a", "f": {"x": 1.0, "t": "2020-W01-1"}}, {"id": "b", "f": {"x": 1.0, "t": "2024-01-01"}}]
    process_batch(kinesis_event(rows), rt)
    assert [d["reason"] for d in dlq.json()] == [Reason.SCHEMA] and [o["id"] for o in out.json()] == ["b"]


def test_a_lone_surrogate_id_gives_a_valid_partition_key_and_valid_unicode() -> None:
    r = Runtime()
    r.run([b'{"id":"\\ud800","f":{"x":1.0}}', b'{"id":"\\ud800","f":{"x":"bad"}}'])
    (pred,) = r.predictions
    key = r.kinesis.records[0][0]
    assert key == hashlib.sha256("\ud800".encode("utf-8", "surrogatepass")).hexdigest()
    assert pred["id"] == "\ufffd" and pred["id_sha256"] == key
    assert r.dead_letters[0]["id"] == "\ufffd"


@pytest.mark.parametrize("bad", [True, False])
def test_a_900_kb_id_is_cut_with_its_digest_and_fits_sqs_and_kinesis(bad: bool) -> None:
    r = Runtime()
    rid = "r" * 900_000
    value: Any = "bad" if bad else 1.0
    assert r.run([{"id": rid, "f": {"x": value}}, {"id": "small", "f": {"x": 2.0}}]) == {"batchItemFailures": []}
    written = r.dead_letters[0] if bad else r.predictions[0]
    assert written["id_sha256"] == hashlib.sha256(rid.encode()).hexdigest()
    assert rid.startswith(written["id"]) and len(json.dumps(written["id"])) <= ID_MAX_BYTES
    assert len(r.dead_letters) == (1 if bad else 0) and len(r.predictions) == (1 if bad else 2)


def test_a_huge_detail_and_huge_data_still_fit_one_sqs_message() -> None:
    class Shouting:
        def predict(self, x: Any) -> Any:
            raise ValueError("\U0001f4a5" * 500_000)

    r = Runtime(Shouting())
    with pytest.raises(ModelBatchError):  # the model never scores anything: a model fault, nothing written
        r.run([{"id": "a", "f": {"x": 1.0}}])
    assert r.kinesis.records == [] and r.sqs.messages == []
    r = Runtime()
    big = {"id": "x" * 400_000, "f": {"x": "no", "pad": "\u00e9" * 300_000}}
    r.run([big])
    (dl,) = r.dead_letters
    assert dl["data_truncated"] is True and dl["data_size"] == len(json.dumps(big).encode())
    assert base64.b64decode(dl["data"], validate=True)  # cut on a base64 boundary


def test_an_empty_kpl_aggregate_is_one_dead_letter() -> None:
    table_only = b"\n\x01k"  # a partition key table and no records: a valid protobuf, a valid checksum
    for body in (table_only, b""):
        r = Runtime()
        r.run([KPL_MAGIC + body + hashlib.md5(body).digest()])
        assert [(d["reason"], d["detail"]) for d in r.dead_letters] == [
            (Reason.KPL_CORRUPT, "KPL aggregate holds no user records")
        ]


def test_kpl_partition_keys_that_are_not_utf8_still_decode() -> None:
    from lambda_fn.records import aggregated_record_class

    agg = aggregated_record_class()()
    agg.partition_key_table.append("k")
    rec = agg.records.add()
    rec.partition_key_index = 0
    rec.data = b'{"f":{"x":1.0}}'
    body = agg.SerializeToString().replace(b"\n\x01k", b"\n\x01\xff")
    data = KPL_MAGIC + body + hashlib.md5(body).digest()
    (user,) = decode_event({"Records": [kinesis_record(data, 5)]})
    assert user.partition_key == "\ufffd" and user.reason is None
    r = Runtime()
    r.run([data])
    assert len(r.predictions) == 1 and r.kinesis.records[0][0] == "\ufffd"


def test_a_model_failing_on_every_row_fails_a_batch_of_any_size() -> None:
    class Broken:
        def predict(self, x: Any) -> Any:
            raise RuntimeError("no BLAS here")

    for n in (1, 2, 7, 8):
        r = Runtime(Broken())
        with pytest.raises(ModelBatchError):
            r.run([{"id": str(i), "f": {"x": float(i)}} for i in range(n)])
        assert r.kinesis.records == [] and r.sqs.messages == []


def test_a_row_breaking_a_working_model_is_dead_lettered_even_alone() -> None:
    class Picky:
        def predict(self, x: Any) -> Any:
            if (x[:, 0] == 13).any():
                raise ValueError("13")
            return x[:, 0]

    r = Runtime(Picky())
    r.run([{"id": "p", "f": {"x": 13.0}}])
    assert [d["reason"] for d in r.dead_letters] == [Reason.MODEL_ERROR]


def test_nan_and_infinite_predictions_become_dead_letters_and_every_output_is_strict_json() -> None:
    class Log:
        def predict(self, x: Any) -> Any:
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.log(x[:, 0])

    r = Runtime(Log())
    r.run([{"id": "a", "f": {"x": 1.0}}, {"id": "b", "f": {"x": 0.0}}, {"id": "c", "f": {"x": -1.0}}])
    assert [p["id"] for p in r.predictions] == ["a"]
    assert [d["reason"] for d in r.dead_letters] == [Reason.NON_FINITE_PREDICTION] * 2


def test_nan_literals_in_input_are_not_json() -> None:
    r = Runtime()
    r.run([b'{"id":NaN,"f":{"x":1}}', b'{"id":"a","f":{"x":-Infinity}}', b'{"id":1e999,"f":{"x":1}}'])
    assert [d["reason"] for d in r.dead_letters] == [Reason.NOT_JSON, Reason.NOT_JSON]
    assert r.predictions[0]["id"] == "Infinity" and "id_sha256" in r.predictions[0]  # 1e999 decodes to inf


def test_a_dead_letter_sqs_refuses_is_replaced_once_by_a_minimal_one() -> None:
    refuse_full = StrictSqs(fault=lambda reason, body: "reject" if b'"data":' in body else None)
    r = Runtime(sqs=refuse_full)
    assert r.run([b"not json", {"id": "a", "f": {"x": 1.0}}]) == {"batchItemFailures": []}
    (dl,) = r.dead_letters
    assert dl["fallback"] is True and dl["reason"] == Reason.NOT_JSON and dl["sequence_number"] == "49000000000"
    assert dl["data_sha256"] == hashlib.sha256(b"not json").hexdigest() and "InvalidMessageContents" in dl["detail"]
    assert r.metrics["DeadLettersRejected"] == 1


def test_when_even_the_minimal_dead_letter_is_refused_the_record_is_reported() -> None:
    r = Runtime(sqs=StrictSqs(fault=lambda reason, body: "reject"))
    assert r.run([{"id": "a", "f": {"x": 1.0}}, b"not json"]) == {
        "batchItemFailures": [{"itemIdentifier": "49000000001"}]
    }


def test_an_sqs_call_refused_for_one_message_isolates_that_message() -> None:
    class TooLong(StrictSqs):
        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            if any("poison-marker" in e["MessageBody"] for e in Entries):
                from botocore.exceptions import ClientError

                raise ClientError({"Error": {"Code": "InvalidParameterValue", "Message": "no"}}, "SendMessageBatch")
            return super().send_message_batch(QueueUrl, Entries)

    r = Runtime(sqs=TooLong())
    items: list[Any] = ["poison-marker", b"plain", b"other"]  # a str is the record's base64: not base64 here
    assert r.run(items) == {"batchItemFailures": []}
    assert sorted(d.get("fallback", False) for d in r.dead_letters) == [False, False, True]


def test_bounded_json_and_partition_key_rules() -> None:
    assert bounded_json("ride-1") == ('"ride-1"', None)
    assert bounded_json(42) == ("42", None) and bounded_json(None) == ("null", None)
    assert bounded_json({"a": [1, "b"]}) == ('{"a":[1,"b"]}', None)
    text, digest = bounded_json({"a": float("nan")})
    assert strict_json(text) == '{"a":NaN}' and digest is not None
    assert bounded_json("\U0001f600") == ('"\\ud83d\\ude00"', None)  # a valid pair is not a lone surrogate
    assert partition_key("k" * 256) == "k" * 256 and len(partition_key("k" * 257)) == 64
    assert partition_key("\U0001f600" * 128) == "\U0001f600" * 128
    assert len(partition_key("\U0001f600" * 129)) == 64  # 258 UTF-16 units
    assert partition_key("", "4900") == "4900"


def test_a_lone_surrogate_in_a_string_feature_fails_its_row_not_the_batch() -> None:
    """Found by the property tests: pandas keeps strings in Arrow, which refuses lone surrogates."""

    class Ones:
        def predict(self, x: Any) -> Any:
            return [1.0] * len(x)

    sig = Signature.from_columns([{"name": "x", "type": "double"}, {"name": "z", "type": "string"}])
    out, dlq = MemorySink(), MemorySink()
    model = fake_model(Ones(), sig)
    rt = StreamRuntime(model=lambda: model, output=out, dlq=dlq, features_field="f", id_field="id")
    process_batch(kinesis_event([b'{"id":"a","f":{"x":1,"z":"\\ud800"}}', {"id": "b", "f": {"x": 1.0, "z": "ok"}}]), rt)
    assert [d["reason"] for d in dlq.json()] == [Reason.SCHEMA] and [o["id"] for o in out.json()] == ["b"]
    no_signature = fake_model(Ones(), None)
    rt.model = lambda: no_signature
    process_batch(kinesis_event([b'{"id":"c","f":{"x":1,"z":"\\udfff"}}']), rt)
    assert dlq.json()[-1]["reason"] == Reason.SCHEMA
