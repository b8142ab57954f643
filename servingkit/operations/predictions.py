"""Tail the predictions stream: every shard, from the oldest record, the newest, or a time; filtered by id.

Records come back per shard in order (Kinesis orders only within a shard). Without `follow` the tail
stops once every shard is caught up (an empty read with MillisBehindLatest 0, or a closed shard read to
its end); with it, it keeps polling, picks up child shards after a reshard, and ends only when stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TRIM_HORIZON, LATEST = "TRIM_HORIZON", "LATEST"
READ_LIMIT = 1000  # records per GetRecords (at most 10,000; 1,000 keeps each answer small)
_THROTTLED = ("ProvisionedThroughputExceededException", "LimitExceededException")


@dataclass(frozen=True)
class Seen:
    """One output record: where it sits in the stream and what it says (strict JSON, or None and why not)."""

    shard_id: str
    sequence_number: str
    record: Any
    error: str | None = None


def id_matches(record: Any, wanted: str) -> bool:
    """The record's `id` (the scorer's ID_FIELD value) is `wanted`, as text or as its JSON."""
    if not isinstance(record, dict) or "id" not in record:
        return False
    rid = record["id"]
    return rid == wanted or json.dumps(rid) == wanted


@dataclass
class _Shard:
    shard_id: str
    iterator: str | None
    last_seq: str | None = None
    caught_up: bool = False


@dataclass
class Tail:
    """One tail of `stream`; `records()` yields what it reads until caught up (or, with `follow`, until stopped)."""

    kinesis: Any
    stream: str
    start: str | datetime = TRIM_HORIZON
    follow: bool = False
    poll_s: float = 1.0
    sleep: Callable[[float], None] = time.sleep
    status: Callable[[str], None] = lambda line: None
    _shards: dict[str, _Shard] = field(default_factory=dict)

    def records(self) -> Iterator[Seen]:
        self._discover(self.start)
        while True:
            got = False
            for shard in list(self._shards.values()):
                for seen in self._read(shard):
                    got = True
                    yield seen
            if not self.follow and all(s.caught_up for s in self._shards.values()):
                return
            if not got:  # all caught up: wait for new records; some behind (an empty stretch): read on soon
                self.sleep(self.poll_s if all(s.caught_up for s in self._shards.values()) else min(0.2, self.poll_s))

    def _discover(self, start: str | datetime) -> None:
        """Add every shard not known yet, reading from `start` (children of a reshard: from their start)."""
        kwargs: dict[str, Any] = {"StreamName": self.stream}
        while True:
            resp = self.kinesis.list_shards(**kwargs)
            for shard in resp.get("Shards", []):
                sid = str(shard["ShardId"])
                if sid not in self._shards:
                    self._shards[sid] = _Shard(sid, self._iterator(sid, start))
            token = resp.get("NextToken")
            if not token:
                return
            kwargs = {"NextToken": token}

    def _iterator(self, shard_id: str, start: str | datetime, after: str | None = None) -> str | None:
        kwargs: dict[str, Any] = {"StreamName": self.stream, "ShardId": shard_id}
        if after is not None:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after)
        elif isinstance(start, datetime):
            kwargs.update(ShardIteratorType="AT_TIMESTAMP", Timestamp=start)
        else:
            kwargs.update(ShardIteratorType=start)
        it = self.kinesis.get_shard_iterator(**kwargs).get("ShardIterator")
        return str(it) if it else None

    def _read(self, shard: _Shard) -> list[Seen]:
        from botocore.exceptions import ClientError

        if shard.iterator is None:
            shard.caught_up = True
            return []
        try:
            resp = self.kinesis.get_records(ShardIterator=shard.iterator, Limit=READ_LIMIT)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _THROTTLED:
                self.status(f"{shard.shard_id}: throttled, backing off")
                self.sleep(self.poll_s)
                return []
            if code == "ExpiredIteratorException":
                shard.iterator = self._iterator(shard.shard_id, self.start, shard.last_seq)
                return []
            raise
        out = [self._seen(shard.shard_id, r) for r in resp.get("Records", [])]
        if out:
            shard.last_seq = out[-1].sequence_number
        shard.iterator = resp.get("NextShardIterator")
        if shard.iterator is None:  # a closed shard, read to its end: its children hold what follows
            shard.caught_up = True
            self._discover(TRIM_HORIZON)
        else:
            shard.caught_up = not out and int(resp.get("MillisBehindLatest", 0)) == 0
        return out

    @staticmethod
    def _seen(shard_id: str, record: dict[str, Any]) -> Seen:
        from lambda_fn.records import decode_json

        seq = str(record["SequenceNumber"])
        try:
            return Seen(shard_id, seq, decode_json(bytes(record["Data"])))
        except (ValueError, RecursionError) as exc:
            return Seen(shard_id, seq, None, f"not strict JSON: {str(exc)[:200]}")


def tail(
    kinesis: Any,
    stream: str,
    *,
    start: str | datetime = TRIM_HORIZON,
    wanted_id: str | None = None,
    follow: bool = False,
    limit: int | None = None,
    poll_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    status: Callable[[str], None] = lambda line: None,
) -> Iterator[Seen]:
    """The stream's records (those whose id is `wanted_id`), at most `limit` of them."""
    count = 0
    if limit == 0:
        return
    for seen in Tail(kinesis, stream, start, follow, poll_s, sleep, status).records():
        if wanted_id is not None and not id_matches(seen.record, wanted_id):
            continue
        yield seen
        count += 1
        if limit is not None and count >= limit:
            return
