"""The operator's commands against LocalStack (the tier's one instance), through the SDK's AWS_ENDPOINT_URL as an
operator's shell has it: dead letters written by the scorer's own encoder and SQS sink, then listed, shown,
redriven to the input stream and tailed there by `servingkit`."""

from __future__ import annotations

import json
import secrets
from collections import Counter
from typing import Any

import boto3
import pytest

from lambda_fn.outputs import dead_letter_body
from lambda_fn.records import Reason, decode_event, map_payloads
from lambda_fn.sinks import Entry, SqsSink
from servingkit.events import kinesis_event
from tests.helpers import run_cli


def test_list_show_redrive_and_tail_on_localstack(pointed: Any, capsys: pytest.CaptureFixture[str]) -> None:
    tag = secrets.token_hex(4)
    kinesis, sqs = boto3.client("kinesis"), boto3.client("sqs")
    stream = f"ops-input-{tag}"
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    queue = sqs.create_queue(QueueName=f"ops-dead-letters-{tag}")["QueueUrl"]

    # The scorer's dead letters, as lambda_fn.stream writes them: records of a Kinesis event that lack the features.
    payloads = [{"ride_id": f"ride-{i}", "trip": {"trip_distance": i}} for i in range(5)]
    records = decode_event(kinesis_event(payloads, key_field="ride_id"))
    map_payloads(records, "ride", "ride_id")
    assert {r.reason for r in records} == {Reason.MISSING_FEATURES}
    outcome = SqsSink(sqs, queue).put(
        [Entry(i, dead_letter_body(r, None), r.reason or "") for i, r in enumerate(records)]
    )
    assert not outcome.failed and not outcome.rejected

    assert run_cli(["dlq", "list", "--queue-url", queue, "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(x["id"] for x in listed) == [f"ride-{i}" for i in range(5)]  # read from the data (--id-field)
    assert run_cli(["dlq", "show", "ride-3", "--queue-url", queue]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["payload"]["json"] == payloads[3] and shown["entry"]["reason"] == "missing_features_field"

    assert run_cli(["dlq", "redrive", "--queue-url", queue, "--stream", stream, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["redriven"] == 5 and report["left"] == {}
    assert run_cli(["dlq", "list", "--queue-url", queue, "--json"]) == 0
    assert capsys.readouterr().out == ""

    assert run_cli(["predictions", "tail", "--stream", stream]) == 0  # any JSON stream: here the input
    tailed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert Counter(t["ride_id"] for t in tailed) == Counter(p["ride_id"] for p in payloads)
