"""Read the dead-letter queue without consuming it: each entry's reason, position, age and original data.

SQS has no peek: a message is read by receiving it, which hides it from other readers for the visibility
timeout. `held()` receives messages and, whatever happens, makes every one it still holds visible again
(ChangeMessageVisibility 0) when the block ends, so listing or showing never removes or delays a dead letter.
While it runs, another reader (or a second operator) does not see the messages it holds.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SQS_BATCH = 10  # ReceiveMessage / ChangeMessageVisibilityBatch / DeleteMessageBatch at most this many
DEFAULT_VISIBILITY_S = 120  # how long a received message stays hidden if this process dies holding it
UNREADABLE = "unreadable"  # the `reason` shown for a message whose body is not a dead letter of the kit


@dataclass(frozen=True)
class DeadLetter:
    """One DLQ message: SQS' identity of it and the body the scorer wrote (lambda_fn.outputs.dead_letter_body)."""

    message_id: str
    receipt_handle: str
    body: dict[str, Any]
    sent_at: datetime | None = None
    receive_count: int = 0
    data_id: Any = None  # the ID_FIELD value read from the data, when the scorer failed before reading it

    @classmethod
    def from_message(cls, msg: dict[str, Any], id_field: str | None = None) -> DeadLetter:
        attrs = msg.get("Attributes") or {}
        sent = attrs.get("SentTimestamp")
        try:
            body = json.loads(msg.get("Body") or "")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {"reason": UNREADABLE, "detail": "the message body is not a dead letter (JSON object)"}
            body["raw_body"] = str(msg.get("Body") or "")[:2000]
        return cls(
            message_id=str(msg["MessageId"]),
            receipt_handle=str(msg["ReceiptHandle"]),
            body=body,
            sent_at=datetime.fromtimestamp(int(sent) / 1000, UTC) if sent else None,
            receive_count=int(attrs.get("ApproximateReceiveCount", 0)),
            data_id=_id_in_data(body, id_field) if id_field and body.get("id") is None else None,
        )

    @property
    def reason(self) -> str:
        return str(self.body.get("reason") or UNREADABLE)

    @property
    def record_id(self) -> Any:
        """The entry's `id`; for a record failed before its id was read (e.g. missing_features_field), its data's."""
        rid = self.body.get("id")
        return self.data_id if rid is None else rid

    @property
    def position(self) -> str:
        """`shard:sequence[/sub]` of the record in the input stream (as `UserRecord.position`)."""
        shard, seq, sub = (self.body.get(k) for k in ("shard_id", "sequence_number", "sub_sequence_number"))
        if not shard and not seq:
            return ""
        return f"{shard}:{seq}" + ("" if sub is None else f"/{sub}")

    def age_seconds(self, now: datetime | None = None) -> float | None:
        """Since the scorer dead-lettered it (`failed_at`, else SQS' SentTimestamp)."""
        when = _parse_time(self.body.get("failed_at")) or self.sent_at
        if when is None:
            return None
        return max(0.0, ((now or datetime.now(UTC)) - when).total_seconds())

    def matches(self, key: str) -> bool:
        """`key` is this message's SQS id or its record's id (`ID_FIELD`'s value, as text or JSON)."""
        rid = self.record_id
        return key == self.message_id or (rid is not None and key in (rid, json.dumps(rid)))

    def original_data(self) -> bytes | None:
        """The bytes of the input record exactly as the producer wrote them, or None if this entry lacks them."""
        return None if self.redrive_problem() else _bytes_of(self.body)

    def redrive_problem(self) -> str | None:
        """Why this entry cannot be put back as it was (None: it can)."""
        if self.reason == UNREADABLE:
            return "not a dead letter of the kit"
        if self.body.get("fallback"):
            return "a fallback dead letter carries no data: read the record from the input stream at its position"
        if self.body.get("data_truncated"):
            return "its data was cut to fit SQS: read the record from the input stream at its position"
        if _bytes_of(self.body) is None:
            return "its data is missing or not base64"
        return None

    def summary(self, now: datetime | None = None) -> dict[str, Any]:
        """What `list --json` prints per entry."""
        age = self.age_seconds(now)
        return {
            "message_id": self.message_id,
            "reason": self.reason,
            "id": self.record_id,
            "shard_id": self.body.get("shard_id"),
            "sequence_number": self.body.get("sequence_number"),
            "sub_sequence_number": self.body.get("sub_sequence_number"),
            "failed_at": self.body.get("failed_at"),
            "age_seconds": None if age is None else round(age, 1),
            "receive_count": self.receive_count,
            "redrivable": self.redrive_problem() is None,
        }


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _id_in_data(body: dict[str, Any], id_field: str) -> Any:
    from lambda_fn.records import decode_json

    raw = _bytes_of(body)
    try:
        payload = decode_json(raw) if raw is not None else None
    except (ValueError, RecursionError):
        return None
    return payload.get(id_field) if isinstance(payload, dict) else None


def _bytes_of(body: dict[str, Any]) -> bytes | None:
    data = body.get("data")
    if not isinstance(data, str):
        return None
    if body.get("data_encoding") == "text":  # it was not base64 when the scorer got it: its text is the record
        return data.encode("utf-8", "surrogatepass")
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError):
        return None


@dataclass
class Receiver:
    """Receives DLQ messages, remembers what it holds, and releases or deletes them."""

    sqs: Any
    queue_url: str
    visibility_s: int = DEFAULT_VISIBILITY_S
    wait_s: int = 1  # long polling: an empty answer means the queue has nothing visible, not a sampled miss
    id_field: str | None = None
    holding: dict[str, DeadLetter] = field(default_factory=dict)

    def receive(self) -> list[DeadLetter]:
        """Up to 10 messages not seen yet (a message seen again after its timeout refreshes its handle)."""
        resp = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=SQS_BATCH,
            VisibilityTimeout=self.visibility_s,
            WaitTimeSeconds=self.wait_s,
            AttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
            MessageAttributeNames=["All"],
        )
        fresh = []
        for msg in resp.get("Messages", []):
            letter = DeadLetter.from_message(msg, self.id_field)
            if letter.message_id not in self.holding:
                fresh.append(letter)
            self.holding[letter.message_id] = letter
        return fresh

    def all(self, limit: int | None = None) -> Iterator[DeadLetter]:
        """Every visible message once (at most `limit`), held until `release()`."""
        count = 0
        while limit is None or count < limit:
            batch = self.receive()
            if not batch:
                return
            for letter in batch:
                if limit is not None and count >= limit:
                    return
                count += 1
                yield letter

    def delete(self, letters: list[DeadLetter]) -> list[str]:
        """Delete these messages; returns the ids SQS did not delete (they stay held, then released)."""
        failed: list[str] = []
        for i in range(0, len(letters), SQS_BATCH):
            chunk = letters[i : i + SQS_BATCH]
            resp = self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(n), "ReceiptHandle": self._handle(x)} for n, x in enumerate(chunk)],
            )
            bad = {int(f["Id"]) for f in resp.get("Failed", [])}
            for n, letter in enumerate(chunk):
                if n in bad:
                    failed.append(letter.message_id)
                else:
                    self.holding.pop(letter.message_id, None)
        return failed

    def release(self) -> None:
        """Make every message still held visible again now (best effort: else it reappears after its timeout)."""
        from botocore.exceptions import BotoCoreError, ClientError

        held = list(self.holding.values())
        self.holding.clear()
        for i in range(0, len(held), SQS_BATCH):
            chunk = held[i : i + SQS_BATCH]
            try:
                self._release(chunk)
            except (ClientError, BotoCoreError):
                continue  # those reappear when their visibility timeout ends

    def _release(self, chunk: list[DeadLetter]) -> None:
        self.sqs.change_message_visibility_batch(
            QueueUrl=self.queue_url,
            Entries=[
                {"Id": str(n), "ReceiptHandle": x.receipt_handle, "VisibilityTimeout": 0} for n, x in enumerate(chunk)
            ],
        )

    def _handle(self, letter: DeadLetter) -> str:
        return self.holding.get(letter.message_id, letter).receipt_handle


@contextmanager
def held(
    sqs: Any, queue_url: str, visibility_s: int = DEFAULT_VISIBILITY_S, id_field: str | None = None
) -> Iterator[Receiver]:
    """A Receiver whose messages are all made visible again when the block ends, however it ends."""
    receiver = Receiver(sqs, queue_url, visibility_s, id_field=id_field)
    try:
        yield receiver
    finally:
        receiver.release()


def list_letters(
    sqs: Any, queue_url: str, *, limit: int | None = None, reason: str | None = None, id_field: str | None = None
) -> list[DeadLetter]:
    """The queue's dead letters (of `reason`), oldest first; with `limit`, the first that many SQS returns.

    Reading stops at `limit`, so a large queue is not held whole (SQS keeps at most 120,000 in flight).
    """
    found: list[DeadLetter] = []
    with held(sqs, queue_url, id_field=id_field) as receiver:
        for letter in receiver.all():
            if reason is None or letter.reason == reason:
                found.append(letter)
                if limit is not None and len(found) >= limit:
                    break
    return sorted(found, key=lambda x: x.body.get("failed_at") or "")


def find_letters(sqs: Any, queue_url: str, key: str, id_field: str | None = None) -> list[DeadLetter]:
    """Entries whose SQS message id or record id is `key` (a record may have been dead-lettered twice)."""
    with held(sqs, queue_url, id_field=id_field) as receiver:
        return [x for x in receiver.all() if x.matches(key)]


def decoded_payload(letter: DeadLetter) -> dict[str, Any]:
    """The entry's data as the scorer reads it: base64 → (KPL user record) → strict JSON, or why it is not JSON."""
    from lambda_fn.records import KPL_MAGIC, decode_json

    raw = _bytes_of(letter.body)
    out: dict[str, Any] = {"size": None if raw is None else len(raw)}
    if raw is None:
        out["error"] = letter.redrive_problem() or "no data"
        return out
    if raw.startswith(KPL_MAGIC):
        out["kpl_aggregate"] = True  # the whole aggregate: the scorer could not read it (see `detail`)
    if letter.body.get("data_truncated"):
        out["truncated"] = f"first {len(raw)} of {letter.body.get('data_size')} bytes"
    try:
        out["json"] = decode_json(raw)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        out["error"] = f"not strict JSON: {str(exc)[:300]}"
        out["text"] = raw[:4000].decode("utf-8", "backslashreplace")
        if not raw.isascii() or any(b < 32 and b not in (9, 10, 13) for b in raw[:4000]):
            out["base64"] = base64.b64encode(raw[:4000]).decode()
    return out


def show(letter: DeadLetter) -> dict[str, Any]:
    """The full entry with its payload decoded, for `dlq show`."""
    return {
        "message_id": letter.message_id,
        "id": letter.record_id,
        "receive_count": letter.receive_count,
        "sent_at": None if letter.sent_at is None else letter.sent_at.isoformat(),
        "position": letter.position,
        "redrive": letter.redrive_problem() or "possible",
        "entry": letter.body,
        "payload": decoded_payload(letter),
    }


def age_text(seconds: float | None) -> str:
    """`42s`, `17m`, `5h`, `3d`: the table's age column."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"
