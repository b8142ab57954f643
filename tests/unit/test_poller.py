"""The local event source mapping behaves like Lambda's: order, checkpoints, resume point, bisect, retries."""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from infra.topology import TriggerSpec
from servingkit.localcloud.poller import FunctionError, KinesisPoller, first_failure, kinesis_event

ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/in"
SHARD = "shardId-000000000000"


class FakeKinesis:
    """Shards as lists; iterators are "shard|index" (only the calls the poller makes)."""

    def __init__(self, shards: dict[str, int], arrival: float | None = None) -> None:
        now = arrival if arrival is not None else time.time()
        self.shards: dict[str, list[dict[str, Any]]] = {}
        self.on_read: list[Any] = []
        for s, (sid, n) in enumerate(shards.items()):
            self.shards[sid] = []
            for i in range(n):
                self.add(sid, f"{s}-{i}", now)

    def add(self, sid: str, key: str, arrival: float) -> None:
        recs = self.shards[sid]
        seq = str(49_000_000_000_000 + list(self.shards).index(sid) * 1_000_000 + len(recs) * 10)
        recs.append(
            {
                "SequenceNumber": seq,
                "PartitionKey": key,
                "Data": json.dumps({"key": key}).encode(),
                "ApproximateArrivalTimestamp": datetime.fromtimestamp(arrival, UTC),
            }
        )

    def list_shards(self, **kwargs: Any) -> dict[str, Any]:
        return {"Shards": [{"ShardId": sid} for sid in self.shards]}

    def get_shard_iterator(self, StreamName: str, ShardId: str, ShardIteratorType: str, **kw: Any) -> dict[str, Any]:
        recs = self.shards[ShardId]
        if ShardIteratorType == "TRIM_HORIZON":
            pos = 0
        elif ShardIteratorType == "LATEST":
            pos = len(recs)
        else:
            pos = next(i for i, r in enumerate(recs) if r["SequenceNumber"] == kw["StartingSequenceNumber"]) + 1
        return {"ShardIterator": f"{ShardId}|{pos}"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        if self.on_read:
            self.on_read.pop(0)()
        sid, pos = ShardIterator.split("|")
        recs = self.shards[sid][int(pos) : int(pos) + Limit]
        return {"Records": recs, "NextShardIterator": f"{sid}|{int(pos) + len(recs)}"}


class FakeSqs:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def send_message(self, QueueUrl: str, MessageBody: str) -> dict[str, Any]:
        self.bodies.append(json.loads(MessageBody))
        return {"MessageId": str(len(self.bodies))}


class Recorder:
    """A handler that records each batch's sequence numbers and answers with a scripted response."""

    def __init__(self, respond: Any = None) -> None:
        self.batches: list[list[str]] = []
        self.respond = respond
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        seqs = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
        with self.lock:
            self.batches.append(seqs)
        return self.respond(seqs) if self.respond else {"batchItemFailures": []}


def make(kinesis: FakeKinesis, handler: Any, **trigger: Any) -> tuple[KinesisPoller, FakeSqs]:
    sqs = FakeSqs()
    spec = TriggerSpec(**{"batching_window_seconds": 0, **trigger})
    poller = KinesisPoller(
        kinesis=kinesis,
        stream_arn=ARN,
        handler=handler,
        trigger=spec,
        sqs=sqs,
        on_failure_url="http://queue/failures",
        idle_poll_s=0.01,
        sleep=lambda s: None,
    )
    poller.discover()
    return poller, sqs


def seqs(kinesis: FakeKinesis, sid: str = SHARD) -> list[str]:
    return [r["SequenceNumber"] for r in kinesis.shards[sid]]


def test_event_has_lambdas_kinesis_shape() -> None:
    kin = FakeKinesis({SHARD: 1})
    poller, _ = make(kin, Recorder())
    consumer = poller.shards[SHARD]
    consumer.fetch()
    event = kinesis_event(list(consumer.buffer), SHARD, ARN, "us-east-1")
    rec = event["Records"][0]
    assert rec["eventID"] == f"{SHARD}:{seqs(kin)[0]}"
    assert rec["eventSource"] == "aws:kinesis" and rec["eventSourceARN"] == ARN
    assert base64.b64decode(rec["kinesis"]["data"]) == kin.shards[SHARD][0]["Data"]
    assert isinstance(rec["kinesis"]["approximateArrivalTimestamp"], float)


def test_batches_in_order_up_to_batch_size_and_checkpoint_at_the_end() -> None:
    kin = FakeKinesis({SHARD: 25})
    handler = Recorder()
    poller, sqs = make(kin, handler, batch_size=10)
    consumer = poller.shards[SHARD]
    while consumer.step():
        pass
    assert [len(b) for b in handler.batches] == [10, 10, 5]
    assert [x for b in handler.batches for x in b] == seqs(kin)
    assert consumer.checkpoint == seqs(kin)[-1]
    assert poller.stats.records_checkpointed == 25 and not sqs.bodies


def test_batching_window_waits_for_records_that_arrive_within_it() -> None:
    kin = FakeKinesis({SHARD: 3})

    def arrive_late() -> None:
        for i in range(4):
            kin.add(SHARD, f"late-{i}", time.time())

    kin.on_read = [lambda: None, arrive_late]
    handler = Recorder()
    poller, _ = make(kin, handler, batch_size=100, batching_window_seconds=1)
    assert poller.shards[SHARD].step() == 7
    assert handler.batches == [seqs(kin)]


def test_batch_item_failures_resume_from_the_lowest_failed_sequence_number() -> None:
    kin = FakeKinesis({SHARD: 10})
    s = seqs(kin)
    calls = {"n": 0}

    def respond(batch: list[str]) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:  # reported out of order on purpose: Lambda takes the lowest
            return {"batchItemFailures": [{"itemIdentifier": s[7]}, {"itemIdentifier": s[3]}]}
        return {"batchItemFailures": []}

    handler = Recorder(respond)
    poller, sqs = make(kin, handler, batch_size=10)
    consumer = poller.shards[SHARD]
    consumer.step()
    assert handler.batches == [s, s[3:]]
    assert consumer.checkpoint == s[-1] and not sqs.bodies
    assert poller.stats.partial_failures == 1 and poller.stats.retries == 1


def test_partial_failure_checkpoints_the_prefix_before_retrying() -> None:
    kin = FakeKinesis({SHARD: 6})
    s = seqs(kin)
    checkpoints: list[str | None] = []
    poller: KinesisPoller

    def respond(batch: list[str]) -> dict[str, Any]:
        checkpoints.append(poller.shards[SHARD].checkpoint)
        return {"batchItemFailures": [{"itemIdentifier": s[4]}]} if len(checkpoints) == 1 else {}

    poller, _ = make(kin, Recorder(respond), batch_size=10)
    poller.shards[SHARD].step()
    assert checkpoints == [None, s[3]]


def test_unknown_item_identifier_fails_the_whole_batch() -> None:
    kin = FakeKinesis({SHARD: 2})
    s = seqs(kin)
    with pytest.raises(FunctionError):
        first_failure({"batchItemFailures": [{"itemIdentifier": "123"}]}, [_rec(x) for x in s])
    with pytest.raises(FunctionError):
        first_failure({"batchItemFailures": [{"itemIdentifier": ""}]}, [_rec(x) for x in s])
    assert first_failure({"batchItemFailures": []}, [_rec(x) for x in s]) is None
    assert first_failure(None, [_rec(x) for x in s]) is None


def _rec(seq: str) -> Any:
    from servingkit.localcloud.poller import StreamRecord

    return StreamRecord(seq, "k", b"{}", 0.0)


def test_function_error_bisects_until_the_poison_record_goes_to_the_on_failure_destination() -> None:
    kin = FakeKinesis({SHARD: 8})
    s = seqs(kin)

    def respond(batch: list[str]) -> dict[str, Any]:
        if s[5] in batch:
            raise RuntimeError("model crashed")
        return {}

    handler = Recorder(respond)
    poller, sqs = make(kin, handler, batch_size=8, retry_attempts=2, bisect_on_error=True)
    consumer = poller.shards[SHARD]
    consumer.step()
    assert handler.batches == [s, s[:4], s[4:], s[4:6], s[4:5], s[5:6], s[5:6], s[5:6], s[6:]]
    assert consumer.checkpoint == s[-1]
    assert poller.stats.records_checkpointed == 7 and poller.stats.records_to_on_failure == 1
    (message,) = sqs.bodies
    info = message["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (s[5], s[5], 1)
    assert info["shardId"] == SHARD and info["streamArn"] == ARN
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["requestContext"]["approximateInvokeCount"] == 3


def test_without_bisect_the_whole_batch_is_retried_then_skipped() -> None:
    kin = FakeKinesis({SHARD: 4})
    s = seqs(kin)

    def respond(batch: list[str]) -> dict[str, Any]:
        raise RuntimeError("always")

    handler = Recorder(respond)
    poller, sqs = make(kin, handler, batch_size=10, retry_attempts=1, bisect_on_error=False)
    poller.shards[SHARD].step()
    assert handler.batches == [s, s]
    assert sqs.bodies[0]["KinesisBatchInfo"]["batchSize"] == 4
    assert poller.shards[SHARD].checkpoint == s[-1]


def test_records_older_than_max_age_are_skipped_without_invoking() -> None:
    kin = FakeKinesis({SHARD: 3}, arrival=time.time() - 120)
    kin.add(SHARD, "fresh", time.time())
    s = seqs(kin)
    handler = Recorder()
    poller, sqs = make(kin, handler, batch_size=10, max_record_age_seconds=60)
    poller.shards[SHARD].step()
    assert handler.batches == [s[3:]]
    (message,) = sqs.bodies
    assert message["requestContext"]["condition"] == "RecordAgeExceeded"
    assert message["KinesisBatchInfo"]["batchSize"] == 3


def test_latest_starting_position_skips_what_is_already_there() -> None:
    kin = FakeKinesis({SHARD: 3})
    handler = Recorder()
    poller, _ = make(kin, handler, batch_size=10, starting_position="LATEST")
    consumer = poller.shards[SHARD]
    assert consumer.step() == 0
    kin.add(SHARD, "new", time.time())
    assert consumer.step() == 1
    assert handler.batches == [seqs(kin)[3:]]


def test_shards_are_consumed_concurrently_in_order_and_stop_cleanly() -> None:
    shards = {f"shardId-00000000000{i}": 40 for i in range(3)}
    kin = FakeKinesis(shards)
    handler = Recorder()
    sqs = FakeSqs()
    poller = KinesisPoller(
        kinesis=kin,
        stream_arn=ARN,
        handler=handler,
        trigger=TriggerSpec(batch_size=7, batching_window_seconds=0),
        sqs=sqs,
        on_failure_url="q",
        idle_poll_s=0.01,
        max_concurrency=3,
    )
    with poller:
        deadline = time.monotonic() + 10
        while poller.stats.records_checkpointed < 120 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert {t.name for t in threading.enumerate()} >= {f"poller-{sid}" for sid in shards}
    assert not any(t.name.startswith("poller-") for t in threading.enumerate())
    assert poller.stats.records_checkpointed == 120 and not poller.errors
    for sid in shards:
        delivered = [x for b in handler.batches if b[0] in set(seqs(kin, sid)) for x in b]
        assert delivered == seqs(kin, sid)
        assert poller.stats.checkpoints[sid] == seqs(kin, sid)[-1]


def test_latest_is_taken_at_start_so_records_put_right_after_are_delivered() -> None:
    kin = FakeKinesis({SHARD: 2})
    handler = Recorder()
    poller, _ = make(kin, handler, batch_size=10, starting_position="LATEST")
    with poller:
        kin.add(SHARD, "right-after-start", time.time())
        deadline = time.monotonic() + 5
        while poller.stats.records_checkpointed < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert handler.batches == [seqs(kin)[2:]]


def test_a_closed_shard_is_read_to_its_end_then_its_thread_ends() -> None:
    kin = FakeKinesis({SHARD: 5})
    real = kin.get_records

    def closing(ShardIterator: str, Limit: int) -> dict[str, Any]:
        resp = real(ShardIterator, Limit)
        return {**resp, "NextShardIterator": None} if not resp["Records"] else resp

    kin.get_records = closing  # type: ignore[method-assign]
    handler = Recorder()
    poller, _ = make(kin, handler, batch_size=10)
    poller.start()
    deadline = time.monotonic() + 5
    while any(t.is_alive() for t in poller._threads) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.is_alive() for t in poller._threads)
    assert handler.batches == [seqs(kin)] and poller.stats.checkpoints[SHARD] == seqs(kin)[-1]
    poller.stop()
