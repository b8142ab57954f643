"""The operator's commands on a moto server this module starts: real dead letters written by the real stream
handler, then listed, shown, redriven after a fix and tailed through `servingkit`, as an operator runs them."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from lambda_fn import runtime
from lambda_fn.handler import stream_handler
from lambda_fn.model_store import artifact_sha256
from servingkit.events import kinesis_event, kinesis_record, kpl_aggregate
from servingkit.localcloud.emulator import Emulator, endpoint_environment, start_emulator
from servingkit.operations import resources
from servingkit.operations.redrive import Redrive
from tests.helpers import FakeContext, run_cli, tiny_row

CTX = FakeContext()


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    server = start_emulator()
    yield server
    server.stop()


@dataclass
class Pipeline:
    """The input and output streams, the DLQ and the scorer's environment on the emulator."""

    kinesis: Any
    sqs: Any
    input: str
    output: str
    dlq_url: str
    sent: dict[str, Any]  # sequence number → the record of the event as the scorer got it

    def input_records(self) -> list[dict[str, Any]]:
        return _read(self.kinesis, self.input)

    def outputs(self) -> list[dict[str, Any]]:
        return [json.loads(r["Data"]) for r in _read(self.kinesis, self.output)]

    def score_input(self) -> None:
        """What the event source mapping does with what the redrive put on the input stream."""
        records = self.input_records()
        event = {
            "Records": [kinesis_record(bytes(r["Data"]), int(r["SequenceNumber"]), r["PartitionKey"]) for r in records]
        }
        assert stream_handler(event, CTX) == {"batchItemFailures": []}


def _read(kinesis: Any, stream: str) -> list[dict[str, Any]]:
    out = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        it = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        resp = kinesis.get_records(ShardIterator=it, Limit=10_000)
        out.extend(resp["Records"])
    return out


def good(i: int) -> dict[str, Any]:
    return {"id": f"r{i}", "features": tiny_row(i)}


def late(i: int) -> dict[str, Any]:
    """A producer that wrote its features under `feats`: poison until the scorer is told (the fix)."""
    return {"id": f"late{i}", "feats": tiny_row(i)}


@pytest.fixture
def pipeline(
    emulator: Emulator, clean_env: pytest.MonkeyPatch, tiny_mlflow_dir: Path, tmp_path: Path
) -> Iterator[Pipeline]:
    for name, value in endpoint_environment(emulator.endpoint_url).items():
        clean_env.setenv(name, value)
    tag = uuid.uuid4().hex[:8]
    s3, kinesis, sqs = boto3.client("s3"), boto3.client("kinesis"), boto3.client("sqs")
    bucket = f"models-{tag}"
    s3.create_bucket(Bucket=bucket)
    for f in sorted(tiny_mlflow_dir.rglob("*")):
        if f.is_file():
            s3.upload_file(str(f), bucket, f"tiny/{f.relative_to(tiny_mlflow_dir).as_posix()}")
    names = (f"in-{tag}", f"out-{tag}")
    for name in names:
        kinesis.create_stream(StreamName=name, ShardCount=2)
    dlq_url = sqs.create_queue(QueueName=f"dead-{tag}")["QueueUrl"]
    env = {
        "MODEL_URI": f"s3://{bucket}/tiny",
        "MODEL_SHA256": artifact_sha256(tiny_mlflow_dir),
        "OUTPUT_STREAM_NAME": names[1],
        "DLQ_URL": dlq_url,
        "MODEL_CACHE_DIR": str(tmp_path / "cache"),
        "FEATURES_FIELD": "features",
        "ID_FIELD": "id",
        "OUTPUT_BASE_DELAY_MS": "1",
    }
    for name, value in env.items():
        clean_env.setenv(name, value)
    items: list[Any] = [good(i) for i in range(20)]
    items[3], items[8] = late(3), late(8)
    items[11] = b"not json {"
    items.append(kpl_aggregate([good(20), late(21)]))  # one sub-record scores, one is dead-lettered
    event = kinesis_event(items, start_seq=5000)
    assert stream_handler(event, CTX) == {"batchItemFailures": []}
    sent = {r["kinesis"]["sequenceNumber"]: r for r in event["Records"]}
    yield Pipeline(kinesis, sqs, names[0], names[1], dlq_url, sent)
    runtime.reset()


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_list_shows_every_dead_letter_and_consumes_none(pipeline: Pipeline, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["dlq", "list", "--queue-url", pipeline.dlq_url, "--json"]) == 0
    rows = _json_lines(capsys.readouterr().out)
    assert Counter(r["reason"] for r in rows) == {"missing_features_field": 3, "not_json": 1}
    assert {r["id"] for r in rows} == {"late3", "late8", "late21", None}
    assert {r["sequence_number"] for r in rows} == {"5003", "5008", "5011", "5020"}
    kpl = next(r for r in rows if r["id"] == "late21")
    assert kpl["sub_sequence_number"] == 1 and kpl["redrivable"] and kpl["age_seconds"] < 60
    # Listed again, by the queue's name this time: nothing was consumed or left hidden.
    queue_name = pipeline.dlq_url.rsplit("/", 1)[1]
    assert run_cli(["dlq", "list", "--queue-url", queue_name, "--reason", "not_json"]) == 0
    out = capsys.readouterr()
    table = out.out.splitlines()
    assert table[0].split() == ["MESSAGE", "ID", "REASON", "RECORD", "ID", "POSITION", "AGE"]
    assert len(table) == 2 and "not_json" in table[1] and "shardId-000000000000:5011" in table[1]
    assert "1 dead letters" in out.err


def test_show_gives_the_reason_and_the_decoded_payload(pipeline: Pipeline, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["dlq", "show", "late21"]) == 0  # the queue from DLQ_URL, as the scorer's environment names it
    shown = json.loads(capsys.readouterr().out)
    assert shown["entry"]["reason"] == "missing_features_field" and "features" in shown["entry"]["detail"]
    assert shown["payload"]["json"] == late(21)  # a KPL user record, decoded as the scorer decodes it
    assert shown["position"] == "shardId-000000000000:5020/1" and shown["redrive"] == "possible"
    run_cli(["dlq", "list", "--json", "--reason", "not_json"])
    message_id = _json_lines(capsys.readouterr().out)[0]["message_id"]
    assert run_cli(["dlq", "show", message_id]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["payload"]["text"] == "not json {" and shown["payload"]["error"].startswith("not strict JSON")
    assert shown["entry"]["data"] == pipeline.sent["5011"]["kinesis"]["data"]
    assert run_cli(["dlq", "show", "nobody"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no dead letter with message id or record id 'nobody'") and err.count("\n") == 1


def test_redrive_after_a_fix_scores_each_record_once(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["dlq", "redrive", "--queue-url", pipeline.dlq_url, "--stream", pipeline.input]
    assert run_cli([*args, "--reason", "missing_features_field", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("would redrive 3 to ")
    assert pipeline.input_records() == []
    assert run_cli([*args, "--reason", "missing_features_field", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["redriven"] == 3 and report["left"] == {} and report["skipped_by_filter"] == 1
    put = pipeline.input_records()
    # Byte for byte, with the partition key each had (a KPL user record's own key from the aggregate).
    assert Counter((json.loads(r["Data"])["id"], r["PartitionKey"]) for r in put) == {
        ("late3", "k3"): 1,
        ("late8", "k8"): 1,
        ("late21", "agg-1"): 1,
    }
    assert bytes(next(r for r in put if r["PartitionKey"] == "k3")["Data"]) == json.dumps(late(3)).encode()
    assert run_cli(["dlq", "list", "--json"]) == 0
    assert [r["reason"] for r in _json_lines(capsys.readouterr().out)] == ["not_json"]

    # The fix: the scorer reads the field those producers used. The event source mapping delivers them.
    runtime.reset()
    monkeypatch.setenv("FEATURES_FIELD", "feats")
    pipeline.score_input()
    ids = Counter(o["id"] for o in pipeline.outputs())
    assert ids["late3"] == ids["late8"] == ids["late21"] == 1 and sum(ids.values()) == 18 + 3

    tail = ["predictions", "tail", "--stream", pipeline.output]
    assert run_cli([*tail, "--id", "late8"]) == 0
    out = capsys.readouterr()
    (line,) = out.out.splitlines()
    record = json.loads(line, parse_constant=lambda c: pytest.fail(c))
    assert record["id"] == "late8" and isinstance(record["prediction"], float)
    assert "1 records from" in out.err
    assert run_cli([*tail, "--limit", "5"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 5
    assert run_cli(tail) == 0
    assert Counter(r["id"] for r in _json_lines(capsys.readouterr().out)) == ids
    assert run_cli([*tail, "--from", "latest"]) == 0
    assert capsys.readouterr().out == ""
    assert run_cli([*tail, "--from", "2000-01-01T00:00Z", "--id", "r0"]) == 0
    assert [r["id"] for r in _json_lines(capsys.readouterr().out)] == ["r0"]


class CrashOnDelete:
    """The SQS client of a process that dies after PutRecords, before DeleteMessageBatch."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def delete_message_batch(self, **kwargs: Any) -> Any:
        raise RuntimeError("killed between put and delete")


def test_a_crash_between_put_and_delete_loses_nothing_and_duplicates_only_by_id(pipeline: Pipeline) -> None:
    job = Redrive(CrashOnDelete(pipeline.sqs), pipeline.kinesis, pipeline.dlq_url, pipeline.input, reason="not_json")
    with pytest.raises(RuntimeError, match="killed"):
        job.run()
    assert len(pipeline.input_records()) == 1  # the record went in ...
    left = Redrive(pipeline.sqs, pipeline.kinesis, pipeline.dlq_url, pipeline.input, reason="not_json").run()
    assert left.ok and len(left.redriven) == 1  # ... the message stayed (visible again at once), and went again
    put = pipeline.input_records()
    assert [bytes(r["Data"]) for r in put] == [b"not json {", b"not json {"]  # at least once: a duplicate
    assert {r["PartitionKey"] for r in put} == {"k11"}  # same key, so the same shard, and the same id
    assert (
        Redrive(pipeline.sqs, pipeline.kinesis, pipeline.dlq_url, pipeline.input, reason="not_json").run().redriven
        == []
    )


class RefusesKey:
    """A Kinesis client whose PutRecords fails every entry with one partition key (throttled for good);
    `calls` counts the attempts at that entry."""

    def __init__(self, real: Any, key: str) -> None:
        self._real, self._key = real, key
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += sum(r["PartitionKey"] == self._key for r in Records)
        keep = [r for r in Records if r["PartitionKey"] != self._key]
        real = iter(self._real.put_records(StreamName=StreamName, Records=keep)["Records"] if keep else [])
        refused = {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"}
        results = [refused if r["PartitionKey"] == self._key else next(real) for r in Records]
        return {"FailedRecordCount": sum("ErrorCode" in r for r in results), "Records": results}


def test_entries_put_records_refuses_stay_in_the_queue_and_fail_the_command(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_client = resources.Aws.client
    refusing: list[RefusesKey] = []

    def client(self: resources.Aws, service: str) -> Any:
        made = real_client(self, service)
        if service == "kinesis":
            refusing.append(RefusesKey(made, "k8"))
            return refusing[-1]
        return made

    monkeypatch.setattr(resources.Aws, "client", client)
    assert run_cli(["dlq", "redrive", "--stream", pipeline.input, "--reason", "missing_features_field"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("redriven 2 to ") and "left 1;" in out
    assert "PutRecords refused it after retries" in out
    assert refusing[-1].calls == 3  # the failed entry was retried (3 attempts in all), then given up
    assert sorted(json.loads(r["Data"])["id"] for r in pipeline.input_records()) == ["late21", "late3"]
    monkeypatch.setattr(resources.Aws, "client", real_client)
    run_cli(["dlq", "list", "--json", "--reason", "missing_features_field"])
    assert [r["id"] for r in _json_lines(capsys.readouterr().out)] == ["late8"]  # visible again, at once


def test_resources_from_a_stack_or_a_clear_error(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfn = boto3.client("cloudformation")
    stack = f"ops-{uuid.uuid4().hex[:6]}"
    outputs = {
        "DeadLetterQueueUrl": pipeline.dlq_url,
        "InputStreamName": pipeline.input,
        "OutputStreamName": pipeline.output,
    }
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {k: {"Value": v} for k, v in outputs.items()},
    }
    cfn.create_stack(StackName=stack, TemplateBody=json.dumps(template))
    monkeypatch.delenv("DLQ_URL")
    assert run_cli(["dlq", "list", "--stack", stack, "--json"]) == 0
    assert len(_json_lines(capsys.readouterr().out)) == 4
    assert run_cli(["dlq", "redrive", "--stack", stack, "--reason", "not_json", "--dry-run"]) == 0
    assert f"would redrive 1 to {pipeline.input};" in capsys.readouterr().out
    assert run_cli(["predictions", "tail", "--stack", stack, "--id", "r1"]) == 0
    assert [r["id"] for r in _json_lines(capsys.readouterr().out)] == ["r1"]

    for argv, message in [
        (["dlq", "list"], "error: give --queue-url or --stack NAME"),
        (["dlq", "list", "--stack", "no-such-stack"], "error: stack 'no-such-stack' does not exist"),
        (["dlq", "list", "--queue-url", pipeline.dlq_url + "-gone"], "error: queue http"),
        (["predictions", "tail", "--stream", "no-such-stream"], "error: stream 'no-such-stream' does not exist"),
        (["predictions", "tail"], "error: give --stream or --stack NAME"),
        (["dlq", "redrive", "--queue-url", pipeline.dlq_url], "error: give --stream or --stack NAME"),
    ]:
        assert run_cli(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1, (argv, err)
