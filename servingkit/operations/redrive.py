"""Put dead letters back on the input stream (after a fix), deleting each one only once Kinesis took its record.

The guarantee, per message: it is deleted from the DLQ only after PutRecords returned a sequence number for
its record, so a dead letter is never lost (it is in the queue, or its record is in the input stream, or
both). It is at least once, not exactly once: a crash, a timeout or a refused delete between the put and
the delete leaves the message in the queue (visible again after the visibility timeout, or at once when
this process releases it) with its record already in the stream, and a later redrive puts it again. The
record is put byte for byte with its partition key, so both copies carry the same id (`ID_FIELD`) and
land on the same shard: duplicates are detectable by id. Messages not put (a refused or throttled entry
after retries, an entry without its data) stay in the queue, visible again, and are reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lambda_fn.sinks import Entry, KinesisSink, RetryPolicy
from lambda_fn.wire import partition_key
from servingkit.operations.dlq import DEFAULT_VISIBILITY_S, DeadLetter, Receiver


@dataclass
class RedriveReport:
    """What a redrive did: message ids redriven, left in the queue (with why), and passed over by the filter."""

    dry_run: bool = False
    redriven: list[str] = field(default_factory=list)
    left: dict[str, str] = field(default_factory=dict)
    skipped: int = 0
    put_not_deleted: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Everything selected went back (nothing left in the queue that was meant to go)."""
        return not self.left and not self.put_not_deleted

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "redriven": len(self.redriven),
            "left": self.left,
            "put_not_deleted": self.put_not_deleted,
            "skipped_by_filter": self.skipped,
            "redriven_ids": self.redriven,
        }


@dataclass
class Redrive:
    """One redrive run: which messages, where to, and how hard to retry refused PutRecords entries."""

    sqs: Any
    kinesis: Any
    queue_url: str
    stream: str
    reason: str | None = None
    max_messages: int | None = None
    dry_run: bool = False
    visibility_s: int = DEFAULT_VISIBILITY_S
    attempts: int = 3
    progress: Callable[[str], None] = lambda line: None

    def run(self) -> RedriveReport:
        report = RedriveReport(dry_run=self.dry_run)
        receiver = Receiver(self.sqs, self.queue_url, self.visibility_s)
        sink = KinesisSink(self.kinesis, self.stream, RetryPolicy(max_attempts=self.attempts))
        try:
            while self.max_messages is None or len(report.redriven) + len(report.left) < self.max_messages:
                batch = receiver.receive()
                if not batch:
                    break
                chosen = self._select(batch, report)
                if chosen and self.dry_run:
                    report.redriven.extend(x.message_id for x in chosen)
                elif chosen and not self._put_and_delete(chosen, sink, receiver, report):
                    break
        finally:
            receiver.release()  # everything not deleted is visible again now, not after the timeout
        return report

    def _select(self, batch: list[DeadLetter], report: RedriveReport) -> list[DeadLetter]:
        chosen: list[DeadLetter] = []
        for letter in batch:
            room = (
                self.max_messages is None or len(report.redriven) + len(report.left) + len(chosen) < self.max_messages
            )
            if not room or (self.reason is not None and letter.reason != self.reason):
                report.skipped += 1
                continue
            problem = letter.redrive_problem()
            if problem:
                report.left[letter.message_id] = problem
                continue
            chosen.append(letter)
        return chosen

    def _put_and_delete(
        self, chosen: list[DeadLetter], sink: KinesisSink, receiver: Receiver, report: RedriveReport
    ) -> bool:
        """Put the batch's records, delete the messages whose records were accepted; False: stop here."""
        from botocore.exceptions import BotoCoreError, ClientError

        entries = []
        for i, letter in enumerate(chosen):
            data = letter.original_data()
            assert data is not None  # _select kept only entries with their data
            key = partition_key(str(letter.body.get("partition_key") or ""), str(letter.body.get("id") or "0"))
            entries.append(Entry(ref=i, data=data, key=key))
        try:
            outcome = sink.put(entries)
        except (ClientError, BotoCoreError) as exc:  # failed for good (retryable ones were retried): stop
            for letter in chosen:
                report.left[letter.message_id] = f"PutRecords failed: {' '.join(str(exc).split())[:200]}"
            return False
        not_put = {
            **{i: "PutRecords refused it after retries" for i in outcome.failed},
            **{i: "over Kinesis' 1 MiB record limit" for i in outcome.too_large},
            **outcome.rejected,
        }
        for i, why in not_put.items():
            report.left[chosen[i].message_id] = why
        accepted = [x for i, x in enumerate(chosen) if i not in not_put]
        # The window of the guarantee: the records are in the stream, the messages not yet deleted.
        refused = set(receiver.delete(accepted))
        for letter in accepted:
            if letter.message_id in refused:
                report.put_not_deleted.append(letter.message_id)
            else:
                report.redriven.append(letter.message_id)
        self.progress(f"redriven {len(report.redriven)}, left {len(report.left)}")
        return True
