"""servingkit.operations on in-memory SQS and Kinesis fakes: parsing dead letters, what a redrive deletes and
leaves, and how the tail walks shards (reshards, throttling, time starts, Ctrl-C)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from servingkit.operations.dlq import DeadLetter, age_text, decoded_payload, find_letters, list_letters
from servingkit.operations.predictions import Tail, id_matches, tail
from servingkit.operations.redrive import Redrive
from tests.helpers import run_cli


def letter_body(raw: bytes, **extra: Any) -> dict[str, Any]:
    body = {
        "reason": "schema_violation",
        "detail": "distance: not a number",
        "data": base64.b64encode(raw).decode(),
        "data_encoding": "base64",
        "shard_id": "shardId-000000000001",
        "sequence_number": "49600",
        "sub_sequence_number": None,
        "partition_key": "ride-1",
        "id": "ride-1",
        "failed_at": datetime.now(UTC).isoformat(),
    }
    return {**body, **extra}


class FakeSqs:
    """Visibility as SQS keeps it: a received message is hidden until deleted or made visible again."""

    def __init__(self, bodies: list[dict[str, Any] | str]) -> None:
        self.messages = {f"m{i}": json.dumps(b) if isinstance(b, dict) else b for i, b in enumerate(bodies)}
        self.hidden: set[str] = set()
        self.handles = 0
        self.refuse_delete: set[str] = set()

    def _id(self, handle: str) -> str:
        return handle.split("#")[0]

    def receive_message(self, **kw: Any) -> dict[str, Any]:
        out: list[dict[str, Any]] = []
        for mid, body in self.messages.items():
            if mid not in self.hidden and len(out) < kw["MaxNumberOfMessages"]:
                self.hidden.add(mid)
                self.handles += 1
                attrs = {"SentTimestamp": "1700000000000", "ApproximateReceiveCount": "1"}
                out.append(
                    {"MessageId": mid, "ReceiptHandle": f"{mid}#{self.handles}", "Body": body, "Attributes": attrs}
                )
        return {"Messages": out}

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        for e in Entries:
            assert e["VisibilityTimeout"] == 0
            self.hidden.discard(self._id(e["ReceiptHandle"]))
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        failed = []
        for e in Entries:
            mid = self._id(e["ReceiptHandle"])
            if mid in self.refuse_delete:
                failed.append({"Id": e["Id"], "Code": "ReceiptHandleIsInvalid", "SenderFault": True})
            else:
                self.messages.pop(mid, None)
                self.hidden.discard(mid)
        return {"Successful": [], "Failed": failed}

    @property
    def visible(self) -> set[str]:
        return set(self.messages) - self.hidden


class FakeKinesis:
    """PutRecords into a list; entries whose key is in `refuse` fail every time."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        self.put: list[tuple[bytes, str]] = []
        self.refuse = refuse

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        results: list[dict[str, Any]] = []
        for r in Records:
            if r["PartitionKey"] in self.refuse:
                results.append({"ErrorCode": "InternalFailure", "ErrorMessage": "boom"})
            else:
                self.put.append((r["Data"], r["PartitionKey"]))
                results.append({"SequenceNumber": str(len(self.put)), "ShardId": "shardId-000000000000"})
        return {"FailedRecordCount": sum("ErrorCode" in r for r in results), "Records": results}


def payload(i: int) -> bytes:
    return json.dumps({"ride_id": f"ride-{i}", "ride": {"trip_distance": "far"}}).encode()


def queue(n: int = 3, **extra: Any) -> FakeSqs:
    return FakeSqs([letter_body(payload(i), partition_key=f"ride-{i}", id=f"ride-{i}", **extra) for i in range(n)])


# --------------------------------------------------------------------------- reading dead letters


def test_a_dead_letter_knows_what_it_can_give_back() -> None:
    msg = {"MessageId": "m", "ReceiptHandle": "h", "Attributes": {"SentTimestamp": "1700000000000"}}
    ok = DeadLetter.from_message({**msg, "Body": json.dumps(letter_body(b'{"a": 1}', sub_sequence_number=2))})
    assert ok.original_data() == b'{"a": 1}' and ok.redrive_problem() is None
    assert ok.position == "shardId-000000000001:49600/2" and ok.matches("ride-1") and ok.matches("m")
    cut = DeadLetter.from_message({**msg, "Body": json.dumps(letter_body(b"x" * 9, data_truncated=True))})
    assert cut.original_data() is None and "cut to fit SQS" in str(cut.redrive_problem())
    fallback = DeadLetter.from_message({**msg, "Body": json.dumps({"reason": "not_json", "fallback": True})})
    assert "fallback" in str(fallback.redrive_problem()) and fallback.position == ""
    junk = DeadLetter.from_message({**msg, "Body": "hello"})
    assert junk.reason == "unreadable" and junk.body["raw_body"] == "hello" and junk.redrive_problem()
    text = DeadLetter.from_message(
        {**msg, "Body": json.dumps(letter_body(b"", data="%%%", data_encoding="text", reason="not_base64"))}
    )
    assert text.original_data() == b"%%%"  # carried as received: its text is the record
    numeric = DeadLetter.from_message({**msg, "Body": json.dumps(letter_body(b"{}", id=42))})
    assert numeric.matches("42") and not numeric.matches("4")
    late = DeadLetter.from_message({**msg, "Body": json.dumps(letter_body(payload(7), id=None))}, id_field="ride_id")
    assert late.record_id == "ride-7"  # failed before the scorer read its id: read from the data


def test_age_is_from_failed_at_else_when_sqs_got_it() -> None:
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    body = letter_body(b"{}", failed_at=(now - timedelta(minutes=17, seconds=5)).isoformat())
    letter = DeadLetter.from_message({"MessageId": "m", "ReceiptHandle": "h", "Body": json.dumps(body)})
    assert age_text(letter.age_seconds(now)) == "17m"
    assert [age_text(s) for s in (None, 5, 7200, 3 * 86400)] == ["-", "5s", "2h", "3d"]


def test_decoded_payload_shows_json_text_or_binary() -> None:
    def decoded(data: bytes) -> dict[str, Any]:
        msg = {"MessageId": "m", "ReceiptHandle": "h", "Body": json.dumps(letter_body(data))}
        return decoded_payload(DeadLetter.from_message(msg))

    assert decoded(b'{"x": [1, 2]}') == {"size": 13, "json": {"x": [1, 2]}}
    nan = decoded(b'{"x": NaN}')
    assert "NaN" in nan["error"] and nan["text"] == '{"x": NaN}' and "base64" not in nan
    binary = decoded(b"\xf3\x89\x9a\xc2\x00\x01")
    assert binary["kpl_aggregate"] and base64.b64decode(binary["base64"]) == b"\xf3\x89\x9a\xc2\x00\x01"


def test_listing_and_finding_leave_every_message_visible() -> None:
    sqs = FakeSqs(
        [letter_body(payload(i), id=f"ride-{i}", reason="schema_violation" if i % 2 else "not_json") for i in range(25)]
    )
    assert [x.record_id for x in list_letters(sqs, "q", reason="not_json", limit=3)] == ["ride-0", "ride-2", "ride-4"]
    assert sqs.visible == set(sqs.messages)
    assert [x.message_id for x in find_letters(sqs, "q", "ride-13")] == ["m13"]
    assert sqs.visible == set(sqs.messages)


# --------------------------------------------------------------------------- redrive


def test_redrive_deletes_exactly_the_messages_whose_records_kinesis_accepted() -> None:
    sqs, kinesis = queue(4), FakeKinesis(refuse=frozenset({"ride-2"}))
    report = Redrive(sqs, kinesis, "q", "in", attempts=2).run()
    assert sorted(report.redriven) == ["m0", "m1", "m3"] and report.left == {
        "m2": "PutRecords refused it after retries"
    }
    assert not report.ok
    assert sorted(kinesis.put) == sorted((payload(i), f"ride-{i}") for i in (0, 1, 3))
    assert set(sqs.messages) == {"m2"} and sqs.visible == {"m2"}  # left, and visible again at once


def test_a_refused_delete_is_reported_as_put_but_not_deleted() -> None:
    sqs, kinesis = queue(2), FakeKinesis()
    sqs.refuse_delete = {"m1"}
    report = Redrive(sqs, kinesis, "q", "in").run()
    assert report.redriven == ["m0"] and report.put_not_deleted == ["m1"] and not report.ok
    assert len(kinesis.put) == 2 and sqs.visible == {"m1"}  # its record is in; a later redrive puts it again


def test_filters_dry_run_and_entries_without_their_data() -> None:
    sqs = FakeSqs(
        [
            letter_body(payload(0)),
            letter_body(payload(1), reason="not_json"),
            letter_body(b"x", data_truncated=True),
            letter_body(payload(3)),
            letter_body(payload(4)),
        ]
    )
    kinesis = FakeKinesis()
    dry = Redrive(sqs, kinesis, "q", "in", reason="schema_violation", dry_run=True).run()
    assert dry.redriven == ["m0", "m3", "m4"] and list(dry.left) == ["m2"] and dry.skipped == 1
    assert kinesis.put == [] and sqs.visible == set(sqs.messages)
    capped = Redrive(sqs, kinesis, "q", "in", reason="schema_violation", max_messages=2).run()
    assert capped.redriven == ["m0"] and list(capped.left) == ["m2"]  # two taken: one put, one without data
    assert set(sqs.messages) == {"m1", "m2", "m3", "m4"} and sqs.visible == set(sqs.messages)


def test_a_put_records_call_that_fails_for_good_stops_the_redrive_and_deletes_nothing() -> None:
    class Denied(FakeKinesis):
        def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "PutRecords")

    sqs = queue(3)
    report = Redrive(sqs, Denied(), "q", "in").run()
    assert report.redriven == [] and len(report.left) == 3 and "AccessDenied" in report.left["m0"]
    assert sqs.visible == set(sqs.messages) == {"m0", "m1", "m2"}


# --------------------------------------------------------------------------- tail


class FakeStream:
    """Shards of records; `closed` shards end (no NextShardIterator) once read; `children` appear after."""

    def __init__(
        self,
        shards: dict[str, list[Any]],
        closed: frozenset[str] = frozenset(),
        later: dict[str, list[Any]] | None = None,
    ) -> None:
        self.shards, self.closed, self.later = shards, closed, later or {}
        self.throttle_once = True
        self.ended = False  # a closed shard was read to its end: the reshard's children are listed from then on
        self.starts: list[dict[str, Any]] = []

    def list_shards(self, **kw: Any) -> dict[str, Any]:
        visible = {**self.shards, **(self.later if self.ended else {})}
        names = sorted(visible)
        if "NextToken" not in kw:  # two pages, as ListShards pages
            return {"Shards": [{"ShardId": s} for s in names[:1]], "NextToken": "t"}
        return {"Shards": [{"ShardId": s} for s in names[1:]]}

    def get_shard_iterator(self, **kw: Any) -> dict[str, Any]:
        self.starts.append(kw)
        return {"ShardIterator": f"{kw['ShardId']}|0"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        shard, pos = ShardIterator.split("|")
        if shard == "s1" and self.throttle_once:
            self.throttle_once = False
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}}, "GetRecords"
            )
        data = {**self.shards, **self.later}[shard]
        start = int(pos)
        chunk = data[start : start + 2]
        records = [
            {"SequenceNumber": str(start + i), "Data": d if isinstance(d, bytes) else json.dumps(d).encode()}
            for i, d in enumerate(chunk)
        ]
        end = start + len(chunk)
        nxt = None if shard in self.closed and end >= len(data) else f"{shard}|{end}"
        self.ended = self.ended or nxt is None
        return {"Records": records, "NextShardIterator": nxt, "MillisBehindLatest": 0 if end >= len(data) else 5}


def test_tail_reads_every_shard_to_its_end_and_follows_a_reshard() -> None:
    stream = FakeStream(
        {"s0": [{"id": "a"}, {"id": "b"}, b"not json", {"id": "c"}], "s1": [{"id": 7}]},
        closed=frozenset({"s0", "s1"}),
        later={"s2": [{"id": "d"}]},
    )
    seen = list(tail(stream, "out", sleep=lambda s: None))
    ids = [x.record["id"] for x in seen if x.error is None]
    assert sorted(map(str, ids)) == ["7", "a", "b", "c", "d"] and ids.index("a") < ids.index("b") < ids.index("c")
    assert [x.sequence_number for x in seen if x.error] == ["2"]
    assert [
        x.record for x in tail(FakeStream({"s0": [{"id": "a"}, {"id": 7}]}), "o", wanted_id="7", sleep=lambda s: None)
    ] == [{"id": 7}]
    assert len(list(tail(FakeStream({"s0": [{"id": i} for i in range(9)]}), "o", limit=4, sleep=lambda s: None))) == 4


def test_tail_starts_at_a_time_and_never_sleeps_when_there_is_more() -> None:
    stream = FakeStream({"s0": [{"id": i} for i in range(6)]})
    naps: list[float] = []
    when = datetime(2026, 12, 1, tzinfo=UTC)
    assert len(list(Tail(stream, "o", start=when, sleep=naps.append).records())) == 6
    assert stream.starts[0]["ShardIteratorType"] == "AT_TIMESTAMP" and stream.starts[0]["Timestamp"] == when
    assert all(n <= 0.2 for n in naps)


def test_follow_polls_until_interrupted(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    naps = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 3:
            raise KeyboardInterrupt

    stream = FakeStream({"s0": [{"id": "a"}]})
    got = []
    with pytest.raises(KeyboardInterrupt):
        for seen in Tail(stream, "o", follow=True, poll_s=0.5, sleep=sleep).records():
            got.append(seen.record)
    assert got == [{"id": "a"}] and naps == [0.5, 0.5, 0.5]

    # Through the command: the lines printed so far, one status line, exit 0, no traceback.
    from servingkit.operations import predictions, resources

    monkeypatch.setattr(resources, "stream", lambda aws, name, stack, **kw: "o")
    monkeypatch.setattr(resources.Aws, "client", lambda self, service: FakeStream({"s0": [{"id": "a"}, {"id": "b"}]}))
    real_tail = predictions.Tail

    def interrupted_tail(*args: Any, **kwargs: Any) -> Any:
        job = real_tail(*args, **kwargs)
        job.sleep = lambda seconds: (_ for _ in ()).throw(KeyboardInterrupt)
        return job

    monkeypatch.setattr(predictions, "Tail", interrupted_tail)
    assert run_cli(["predictions", "tail", "--follow"]) == 0
    out = capsys.readouterr()
    assert out.out == '{"id":"a"}\n{"id":"b"}\n' and out.err == "stopped: 2 records\n"


def test_id_matches_text_and_json() -> None:
    assert id_matches({"id": "r1"}, "r1") and id_matches({"id": 12}, "12") and id_matches({"id": None}, "null")
    assert not id_matches({"id": "r1"}, "r2") and not id_matches(["r1"], "r1") and not id_matches({}, "r1")
