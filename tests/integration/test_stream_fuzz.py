"""The delivery guarantee through the local event source mapping (KinesisPoller) on moto: hostile records
are put on a real (moto) stream, read in batches of any size, scored, written to a moto output stream and
dead-letter queue through sinks that fail, throttle or refuse; failures are redelivered as Lambda does.

Whatever arrives, every record ends as a prediction or a dead letter (a broken model: in the on-failure
destination, as Lambda skips it), every output is strict JSON within the services' limits, and a working
model never sends anything on-failure: poison does not block the shard.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws

from infra.topology import TriggerSpec
from lambda_fn.outputs import DLQ_BODY_MAX
from lambda_fn.sinks import KinesisSink, RetryPolicy, SqsSink
from lambda_fn.stream import StreamRuntime, process_batch
from servingkit.localcloud.poller import KinesisPoller
from tests.fuzzing import fuzz
from tests.helpers import fake_model
from tests.service_fakes import Faulty, strict_json
from tests.strategies import SIG, Faults, Generated, Model, check_outputs, faults, position, records

pytestmark = pytest.mark.fuzz
NO_SLEEP = RetryPolicy(max_attempts=2, base_delay_s=0, sleep=lambda _s: None)
FAULTY_INVOCATIONS = 4


def _read_stream(kinesis: Any, name: str) -> list[tuple[str, bytes]]:
    shard = kinesis.list_shards(StreamName=name)["Shards"][0]["ShardId"]
    it = kinesis.get_shard_iterator(StreamName=name, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    out: list[tuple[str, bytes]] = []
    while it:
        resp = kinesis.get_records(ShardIterator=it, Limit=10_000)
        out += [(r["PartitionKey"], r["Data"]) for r in resp["Records"]]
        if not resp["Records"]:
            break
        it = resp.get("NextShardIterator")
    return out


def _drain(sqs: Any, url: str) -> list[str]:
    bodies: list[str] = []
    while msgs := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        bodies += [m["Body"] for m in msgs]
        sqs.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)]
        )
    return bodies


def _put(kinesis: Any, gens: list[Generated], keys: list[str]) -> list[tuple[str, int | None]]:
    """Put the records on the input stream; the user-record positions they hold, by assigned sequence number."""
    expected: list[tuple[str, int | None]] = []
    for g, key in zip(gens, keys, strict=True):
        data = g.data if isinstance(g.data, bytes) else g.data.encode()  # Kinesis only carries bytes
        seq = kinesis.put_record(StreamName="in", Data=data, PartitionKey=key)["SequenceNumber"]
        expected += [(seq, s) for s in range(g.users)] if g.aggregate else [(seq, None)]
    return expected


@fuzz(12)
@given(
    st.lists(records, min_size=1, max_size=12),
    st.lists(st.text(min_size=1, max_size=12), min_size=12, max_size=12),
    faults,
    st.sampled_from(["rows", "rows", "raises"]),
    st.integers(1, 10),
)
def test_through_the_event_source_mapping_every_record_ends_somewhere(
    gens: list[Generated], keys: list[str], f: Faults, kind: str, batch_size: int
) -> None:
    with mock_aws():
        kinesis, sqs = boto3.client("kinesis", region_name="us-east-1"), boto3.client("sqs", region_name="us-east-1")
        for name in ("in", "out"):
            kinesis.create_stream(StreamName=name, ShardCount=1)
        dlq = sqs.create_queue(QueueName="dlq", Attributes={"MaximumMessageSize": "262144"})["QueueUrl"]
        on_failure = sqs.create_queue(QueueName="on-failure")["QueueUrl"]
        expected = _put(kinesis, gens, keys[: len(gens)])

        est = Model(kind)
        model = fake_model(est, SIG)
        rt = StreamRuntime(
            model=lambda: model,
            output=KinesisSink(Faulty(kinesis, f.kinesis, f.throttle), "out", NO_SLEEP),
            dlq=SqsSink(Faulty(sqs, f.sqs, f.throttle), dlq, NO_SLEEP),
            features_field="f",
            id_field="id",
        )
        calls = [0]

        def handler(event: dict[str, Any], context: Any) -> Any:
            calls[0] += 1
            f.active = calls[0] <= FAULTY_INVOCATIONS  # sinks recover after a few invocations
            return process_batch(event, rt)

        arn = kinesis.describe_stream_summary(StreamName="in")["StreamDescriptionSummary"]["StreamARN"]
        trigger = TriggerSpec(
            batch_size=batch_size, batching_window_seconds=0, retry_attempts=1 if kind != "rows" else -1
        )
        poller = KinesisPoller(
            kinesis=kinesis, stream_arn=arn, handler=handler, trigger=trigger, sqs=sqs, on_failure_url=on_failure,
            idle_poll_s=0, sleep=lambda _s: None,
        )  # fmt: skip
        (consumer,) = poller.discover()
        while consumer.step():
            assert calls[0] < 500, "the shard is blocked"

        outputs = _read_stream(kinesis, "out")
        assert all(
            0 < len(k.encode("utf-16-le")) // 2 <= 256 and len(d) + len(k.encode()) <= 1 << 20 for k, d in outputs
        )
        predictions = [strict_json(d) for _, d in outputs]
        bodies = _drain(sqs, dlq)
        assert all(len(b.encode()) <= DLQ_BODY_MAX for b in bodies)
        dead_letters = [strict_json(b) for b in bodies]
        check_outputs(predictions, dead_letters)
        skipped = [strict_json(b)["KinesisBatchInfo"] for b in _drain(sqs, on_failure)]
        if kind == "rows":
            assert not skipped, "a working model's records went to the on-failure destination"

        def in_skipped(seq: str) -> bool:
            return any(int(s["startSequenceNumber"]) <= int(seq) <= int(s["endSequenceNumber"]) for s in skipped)

        written = {position(o) for o in predictions + dead_letters}
        lost = [p for p in expected if p not in written and not in_skipped(p[0])]
        assert not lost, f"records neither written nor skipped: {lost[:5]}"
