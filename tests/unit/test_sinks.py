from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambda_fn.sinks import (
    KINESIS_MAX_BYTES,
    Entry,
    KinesisSink,
    RetryPolicy,
    SqsSink,
    chunks,
)

NO_SLEEP = RetryPolicy(max_attempts=5, base_delay_s=0.001, sleep=lambda _s: None)


class FlakyKinesis:
    """Fails chosen entries on their first `fail_times` attempts; records every call."""

    def __init__(self, fail_keys: set[str], fail_times: int = 1, throttle_calls: int = 0) -> None:
        self.fail_keys = fail_keys
        self.fail_times = fail_times
        self.throttle_calls = throttle_calls
        self.calls: list[list[str]] = []
        self.attempts: dict[str, int] = {}
        self.written: list[str] = []

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        keys = [r["PartitionKey"] for r in Records]
        self.calls.append(keys)
        if self.throttle_calls:
            self.throttle_calls -= 1
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "PutRecords"
            )
        out = []
        for k in keys:
            n = self.attempts[k] = self.attempts.get(k, 0) + 1
            if k in self.fail_keys and n <= self.fail_times:
                out.append({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"})
            else:
                self.written.append(k)
                out.append({"SequenceNumber": str(len(self.written)), "ShardId": "shardId-0"})
        return {"FailedRecordCount": sum("ErrorCode" in o for o in out), "Records": out}


def entries(n: int, size: int = 10) -> list[Entry]:
    return [Entry(ref=i, data=b"x" * size, key=f"k{i}") for i in range(n)]


def test_chunks_respect_count_and_size() -> None:
    assert [len(c) for c in chunks(entries(1201), 500, KINESIS_MAX_BYTES)] == [500, 500, 201]
    big = entries(12, size=1024 * 1024 - 10)
    parts = list(chunks(big, 500, KINESIS_MAX_BYTES))
    assert [len(c) for c in parts] == [5, 5, 2]
    assert all(sum(len(e.data) + len(e.key) for e in c) <= KINESIS_MAX_BYTES for c in parts)


def test_only_failed_entries_are_retried() -> None:
    client = FlakyKinesis({"k3", "k7"})
    out = KinesisSink(client, "s", NO_SLEEP).put(entries(10))
    assert out.failed == []
    assert out.retries == 2
    assert client.calls[1] == ["k3", "k7"]
    assert sorted(client.written) == sorted(f"k{i}" for i in range(10))
    assert len(client.written) == 10


def test_whole_call_throttling_is_retried() -> None:
    client = FlakyKinesis(set(), throttle_calls=2)
    out = KinesisSink(client, "s", NO_SLEEP).put(entries(3))
    assert out.failed == [] and len(client.written) == 3 and len(client.calls) == 3


def test_persistent_failures_are_returned_not_lost() -> None:
    client = FlakyKinesis({"k1"}, fail_times=99)
    out = KinesisSink(client, "s", NO_SLEEP).put(entries(3))
    assert out.failed == [1]
    assert client.attempts["k1"] == 5


def test_non_retryable_errors_propagate() -> None:
    class Denied:
        def put_records(self, **_: Any) -> Any:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "PutRecords")

    with pytest.raises(ClientError):
        KinesisSink(Denied(), "s", NO_SLEEP).put(entries(1))


def test_records_over_one_mib_are_reported_as_too_large() -> None:
    client = FlakyKinesis(set())
    big = Entry(ref=5, data=b"x" * (1024 * 1024), key="k")
    out = KinesisSink(client, "s", NO_SLEEP).put([big, *entries(2)])
    assert out.too_large == [5]
    assert len(client.written) == 2


def test_sqs_batches_of_ten_and_retries_failed_ids() -> None:
    class Sqs:
        def __init__(self) -> None:
            self.batches: list[int] = []
            self.first = True

        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            self.batches.append(len(Entries))
            if self.first:
                self.first = False
                return {"Successful": [], "Failed": [{"Id": "2", "SenderFault": False, "Code": "InternalError"}]}
            return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    sqs = Sqs()
    out = SqsSink(sqs, "https://q", NO_SLEEP).put(entries(23))
    assert out.failed == []
    assert sqs.batches == [10, 1, 10, 3]


def test_sqs_entries_refused_for_their_content_are_returned_not_retried() -> None:
    class Sqs:
        def __init__(self) -> None:
            self.sent: list[str] = []

        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            self.sent += [e["Id"] for e in Entries]
            failed: list[dict[str, Any]] = [
                {"Id": "1", "SenderFault": True, "Code": "InvalidMessageContents", "Message": "bad char"}
            ]
            if len(Entries) == 3:
                failed.append({"Id": "2", "SenderFault": False, "Code": "InternalError", "Message": "later"})
            return {"Successful": [], "Failed": [f for f in failed if int(f["Id"]) < len(Entries)]}

    sqs = Sqs()
    out = SqsSink(sqs, "https://q", NO_SLEEP).put(entries(3))
    assert out.rejected == {1: "InvalidMessageContents: bad char"} and out.failed == []
    assert sqs.sent == ["0", "1", "2", "0"]  # only the entry that failed for SQS' own reasons went again


def test_an_sqs_call_refused_for_its_content_is_split_to_find_the_message() -> None:
    class Sqs:
        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            if len(Entries) > 1 or Entries[0]["MessageBody"].startswith("bad"):
                raise ClientError(
                    {"Error": {"Code": "AWS.SimpleQueueService.BatchRequestTooLong", "Message": "too long"}},
                    "SendMessageBatch",
                )
            return {"Successful": [{"Id": "0"}], "Failed": []}

    batch = [Entry(0, b"ok", "r"), Entry(1, b"bad body", "r"), Entry(2, b"fine", "r")]
    out = SqsSink(Sqs(), "https://q", NO_SLEEP).put(batch)
    assert list(out.rejected) == [1] and "BatchRequestTooLong" in out.rejected[1] and out.failed == []
