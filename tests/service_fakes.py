"""Kinesis and SQS clients that check what the real services check, with faults injected on demand.

They refuse what AWS refuses (a call over its count or byte limits, a partition key that is empty, too long
or not valid Unicode, a message body with characters outside SQS' XML set) the way AWS does: a ClientError
for the whole call, or a per-entry error. `fault` decides per entry (and `throttle` per call) what goes
wrong beyond that, so property tests can make sinks fail partially, throttle or refuse permanently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

KINESIS_RECORD_BYTES = 1024 * 1024
KINESIS_REQUEST_BYTES = 5 * 1024 * 1024
SQS_MESSAGE_BYTES = 256 * 1024
# Characters SQS accepts in a message body (the W3C XML set).
_SQS_INVALID = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

Fault = Callable[[str, bytes], str | None]  # (partition key or reason, data) -> None, "retry" or "reject"


def _error(code: str, message: str, op: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, op)


def strict_json(data: bytes | str) -> Any:
    """json.loads that refuses NaN / Infinity and any non-ASCII or lone-surrogate escape a strict parser refuses."""

    def no_constant(name: str) -> Any:
        raise ValueError(f"non-standard JSON constant {name}")

    text = data.decode("utf-8") if isinstance(data, bytes) else data
    value = json.loads(text, parse_constant=no_constant)
    stack = [value]
    while stack:  # every string must be valid Unicode (no lone surrogates)
        v = stack.pop()
        if isinstance(v, str):
            v.encode("utf-8")
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
    return value


class StrictKinesis:
    """put_records with Kinesis' checks; accepted records are kept as (partition key, data)."""

    def __init__(self, fault: Fault | None = None, throttle: Callable[[], bool] | None = None) -> None:
        self.records: list[tuple[str, bytes]] = []
        self.fault = fault
        self.throttle = throttle
        self.calls = 0

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        if not 1 <= len(Records) <= 500:
            raise _error("ValidationException", f"{len(Records)} records: 1 to 500 allowed", "PutRecords")
        total = 0
        for r in Records:
            key, data = r["PartitionKey"], r["Data"]
            if not isinstance(key, str) or not key or len(key.encode("utf-16-le")) // 2 > 256:
                raise _error("ValidationException", "partition key must be 1 to 256 characters", "PutRecords")
            key.encode("utf-8")  # a lone surrogate cannot even be sent
            size = len(data) + len(key.encode("utf-8"))
            if size > KINESIS_RECORD_BYTES:
                raise _error("ValidationException", "record over 1 MiB", "PutRecords")
            total += size
        if total > KINESIS_REQUEST_BYTES:
            raise _error("InvalidArgumentException", "request over 5 MiB", "PutRecords")
        if self.throttle is not None and self.throttle():
            raise _error("ProvisionedThroughputExceededException", "slow down", "PutRecords")
        out = []
        for r in Records:
            verdict = self.fault(r["PartitionKey"], r["Data"]) if self.fault else None
            if verdict is not None:
                out.append({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"})
            else:
                self.records.append((r["PartitionKey"], bytes(r["Data"])))
                out.append({"SequenceNumber": str(len(self.records)), "ShardId": "shardId-000000000000"})
        return {"FailedRecordCount": sum("ErrorCode" in o for o in out), "Records": out}

    def json(self) -> list[Any]:
        return [strict_json(d) for _, d in self.records]


class StrictSqs:
    """send_message_batch with SQS' checks; accepted messages are kept as (reason attribute, body)."""

    def __init__(self, fault: Fault | None = None, throttle: Callable[[], bool] | None = None) -> None:
        self.messages: list[tuple[str, str]] = []
        self.fault = fault
        self.throttle = throttle
        self.rejected = 0

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        if not 1 <= len(Entries) <= 10:
            raise _error("AWS.SimpleQueueService.TooManyEntriesInBatchRequest", "1 to 10 entries", "SendMessageBatch")
        if len({e["Id"] for e in Entries}) != len(Entries):
            raise _error("AWS.SimpleQueueService.BatchEntryIdsNotDistinct", "ids repeat", "SendMessageBatch")
        total = 0
        for e in Entries:
            attrs = e.get("MessageAttributes", {})
            total += len(e["MessageBody"].encode("utf-8", "surrogatepass"))
            total += sum(len(k) + len(v["DataType"]) + len(v["StringValue"].encode()) for k, v in attrs.items())
        if total > SQS_MESSAGE_BYTES:
            raise _error("AWS.SimpleQueueService.BatchRequestTooLong", f"{total} bytes", "SendMessageBatch")
        if self.throttle is not None and self.throttle():
            raise _error("RequestThrottled", "slow down", "SendMessageBatch")
        ok, failed = [], []
        for e in Entries:
            body = e["MessageBody"]
            reason = e["MessageAttributes"]["reason"]["StringValue"]
            verdict = "reject" if not body or _SQS_INVALID.search(body) else None
            if verdict is None and self.fault is not None:
                verdict = self.fault(reason, body.encode("utf-8", "surrogatepass"))
            if verdict == "reject":
                self.rejected += 1
                failed.append({"Id": e["Id"], "SenderFault": True, "Code": "InvalidMessageContents", "Message": "no"})
            elif verdict == "retry":
                failed.append({"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "later"})
            else:
                self.messages.append((reason, body))
                ok.append({"Id": e["Id"], "MessageId": str(len(self.messages)), "MD5OfMessageBody": ""})
        return {"Successful": ok, "Failed": failed}

    def json(self) -> list[Any]:
        return [strict_json(b) for _, b in self.messages]


class Faulty:
    """Wraps a real (moto) Kinesis or SQS client: chosen entries fail or are refused, the rest go through."""

    def __init__(self, client: Any, fault: Fault, throttle: Callable[[], bool] | None = None) -> None:
        self.client, self.fault, self.throttle = client, fault, throttle

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        if self.throttle is not None and self.throttle():
            raise _error("ProvisionedThroughputExceededException", "slow down", "PutRecords")
        failing = [self.fault(r["PartitionKey"], r["Data"]) is not None for r in Records]
        passed = [r for r, bad in zip(Records, failing, strict=True) if not bad]
        answers = iter(self.client.put_records(StreamName=StreamName, Records=passed)["Records"] if passed else [])
        out = [
            {"ErrorCode": "InternalFailure", "ErrorMessage": "injected"} if bad else next(answers) for bad in failing
        ]
        return {"FailedRecordCount": sum("ErrorCode" in o for o in out), "Records": out}

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        if self.throttle is not None and self.throttle():
            raise _error("RequestThrottled", "slow down", "SendMessageBatch")
        verdicts = [
            self.fault(e["MessageAttributes"]["reason"]["StringValue"], e["MessageBody"].encode()) for e in Entries
        ]
        passed = [e for e, v in zip(Entries, verdicts, strict=True) if v is None]
        resp = self.client.send_message_batch(QueueUrl=QueueUrl, Entries=passed) if passed else {}
        failed = list(resp.get("Failed", []))
        for e, v in zip(Entries, verdicts, strict=True):
            if v is not None:
                code = "InvalidMessageContents" if v == "reject" else "InternalError"
                failed.append({"Id": e["Id"], "SenderFault": v == "reject", "Code": code, "Message": "injected"})
        return {"Successful": resp.get("Successful", []), "Failed": failed}


class FakeS3:
    """put_object / get_object in memory, thread-safe, with faults: `fault(key)` returns None (stored), "error"
    (a ClientError: InternalError), "throttle" (SlowDown) or "hang" (blocks until `release()`, then stores)."""

    def __init__(self, fault: Callable[[str], str | None] | None = None) -> None:
        import threading

        self.objects: dict[str, bytes] = {}
        self.fault = fault
        self.calls = 0
        self._lock = threading.Lock()
        self._released = threading.Event()

    def release(self) -> None:
        self._released.set()

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, **_: Any) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
        what = self.fault(Key) if self.fault is not None else None
        if what == "error":
            raise _error("InternalError", "We encountered an internal error. Please try again.", "PutObject")
        if what == "throttle":
            raise _error("SlowDown", "Please reduce your request rate.", "PutObject")
        if what == "hang":
            self._released.wait(30)
        with self._lock:
            self.objects[f"{Bucket}/{Key}"] = bytes(Body)
        return {"ETag": '"0"'}

    def get_object(self, *, Bucket: str, Key: str, **_: Any) -> dict[str, Any]:
        import io

        with self._lock:
            body = self.objects[f"{Bucket}/{Key}"]
        return {"Body": io.BytesIO(body)}

    def keys(self, part: str = "") -> list[str]:
        with self._lock:
            return sorted(k for k in self.objects if part in k)
