"""The whole pipeline on the embedded emulator: producer → Kinesis → poller → real handler → Kinesis / SQS.

Each test starts its own moto server on 127.0.0.1 (free port) and stops it. Checks are made on what
was read back from the output stream and the DLQ, against the producer's ledger of positions.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lambda_fn.config import Env
from servingkit.localcloud.accounting import PipelineSummary
from servingkit.localcloud.cloud import LocalCloud


@pytest.fixture(autouse=True)
def _no_stray_settings(clean_env: pytest.MonkeyPatch) -> Iterator[None]:
    yield


def check_one_to_one(
    cloud: LocalCloud, summary: PipelineSummary, exactly_once: bool = True
) -> tuple[list[dict[str, Any]], set[str]]:
    """Every good record predicted under its own id and every poison record dead-lettered (once each,
    unless redelivery was expected: Lambda's Kinesis source is at-least-once)."""
    collector = cloud.last_collector
    assert collector is not None
    ledger = cloud.last_ledger
    outputs = [body for _, body in collector.outputs]
    good = {pos: label for pos, (label, kind) in ledger.items() if kind is None}
    poison = {pos for pos, (_, kind) in ledger.items() if kind is not None}

    def pos_of(src: dict[str, Any]) -> tuple[str, str, int | None]:
        return (src["shard_id"], src["sequence_number"], src["sub_sequence_number"])

    predicted = Counter(pos_of(o["source"]) for o in outputs)
    assert set(predicted) == set(good)
    assert {o["id"] for o in outputs} == set(good.values())
    assert all(o["id"] == good[pos_of(o["source"])] for o in outputs)
    dead = Counter(pos_of(d) for d in collector.dead if pos_of(d) in ledger)
    assert set(dead) == poison
    if exactly_once:
        assert all(n == 1 for n in dead.values()) and all(n == 1 for n in predicted.values())
    assert summary.lost == 0 and summary.misrouted == 0 and summary.id_mismatches == 0
    return outputs, {label for label, _ in ledger.values()}


def test_ten_thousand_records_one_percent_poison(release: tuple[Path, Path]) -> None:
    with LocalCloud(model_dir=release[0], release=release[1]) as cloud:
        summary = cloud.run(10_000, poison_rate=0.01, timeout_s=180)
    outputs, _ = check_one_to_one(cloud, summary)
    assert summary.records_in == 10_000 and summary.poison_in == 100
    assert summary.predicted == 9_900 and len(outputs) == 9_900
    assert summary.dead_lettered == 100 and summary.duplicates == 0 and summary.skipped_on_failure == 0
    assert summary.kpl_user_records > 0
    # Each poison kind reached the DLQ with its own reason.
    assert set(summary.dlq_reasons) >= {"not_json", "not_object", "missing_features_field", "kpl_corrupt"}
    assert set(summary.dlq_reasons) & {"hook_error", "schema_violation"}
    assert summary.poller["function_errors"] == 0 and not summary.poller["errors"]
    model = outputs[0]["model"]
    assert model["sha256"] == json.loads(release[1].read_text())["sha256"]
    assert all(isinstance(o["prediction"], float) and o["prediction"] > 0 for o in outputs)
    assert summary.latency_ms_p50 is not None and summary.throughput_rps > 0


def test_multi_shard_stream_is_consumed_on_every_shard(release: tuple[Path, Path]) -> None:
    with LocalCloud(model_dir=release[0], release=release[1], shards=4, ctx={"output_shards": 3}) as cloud:
        summary = cloud.run(2_000, timeout_s=120)
        outputs, _ = check_one_to_one(cloud, summary)
        again = cloud.run(500, seed=7, timeout_s=120)
        check_one_to_one(cloud, again)
        assert cloud.poller is not None and cloud.resources is not None
        checkpoints = dict(cloud.poller.stats.checkpoints)
        kinesis = cloud.clients["kinesis"]
        shards_in = kinesis.list_shards(StreamName=cloud.topology.input_stream.name)["Shards"]
        shards_out = kinesis.list_shards(StreamName=cloud.topology.output_stream.name)["Shards"]
    assert len(shards_in) == 4 and len(shards_out) == 3
    assert len(checkpoints) == 4
    assert len({o["source"]["shard_id"] for o in outputs}) == 4
    assert summary.predicted == 1_980 and summary.dead_lettered == 20 and summary.duplicates == 0
    # A second run on the same resources counts only its own records; the first run's dead letters
    # (left in the queue for the user) are reported as foreign, not as misrouted.
    assert (again.predicted, again.dead_lettered, again.lost, again.duplicates) == (495, 5, 0, 0)
    assert again.foreign == 20


class FlakyKinesis:
    """Wraps the scorer's Kinesis client: during a burst of `burst` PutRecords calls, some reject half
    their entries and some are throttled outright; afterwards the stream is healthy again."""

    def __init__(self, real: Any, burst: int = 8) -> None:
        self.real = real
        self.burst = burst
        self.calls = 0
        self.rejected = 0
        self.throttled = 0
        self.lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        with self.lock:
            self.calls += 1
            call = self.calls
        if call > self.burst:
            return dict(self.real.put_records(StreamName=StreamName, Records=Records))
        if call % 5 == 2:
            with self.lock:
                self.throttled += 1
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "Rate exceeded"}}, "PutRecords"
            )
        if call % 5 in (1, 4) and len(Records) > 1:
            keep = Records[::2]
            resp = self.real.put_records(StreamName=StreamName, Records=keep)
            sent = iter(resp["Records"])
            out = []
            for i in range(len(Records)):
                if i % 2 == 0:
                    out.append(next(sent))
                else:
                    out.append({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"})
            with self.lock:
                self.rejected += len(Records) - len(keep)
            return {"FailedRecordCount": len(Records) - len(keep), "Records": out}
        return dict(self.real.put_records(StreamName=StreamName, Records=Records))


@pytest.mark.parametrize("max_attempts", ["6", "1"], ids=["absorbed-by-sink-retries", "redelivered-by-poller"])
def test_transient_output_faults_lose_nothing(
    release: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, max_attempts: str
) -> None:
    """With sink retries the faults are absorbed; with none, batchItemFailures make the poller redeliver."""
    from lambda_fn import runtime

    real_client = runtime.client
    flaky: list[FlakyKinesis] = []

    def client(service: str) -> Any:
        made = real_client(service)
        if service == "kinesis":
            flaky.append(FlakyKinesis(made))
            return flaky[-1]
        return made

    monkeypatch.setattr(runtime, "client", client)
    env = {Env.OUTPUT_MAX_ATTEMPTS: max_attempts, Env.OUTPUT_BASE_DELAY_MS: "1"}
    with LocalCloud(model_dir=release[0], release=release[1], environment=env, ctx={"batch_size": 100}) as cloud:
        summary = cloud.run(2_000, timeout_s=120)
    assert flaky and flaky[0].rejected > 0 and flaky[0].throttled > 0
    outputs, _ = check_one_to_one(cloud, summary, exactly_once=max_attempts != "1")
    assert summary.predicted == 1_980 and summary.dead_lettered == 20 and summary.skipped_on_failure == 0
    if max_attempts == "1":
        assert summary.poller["partial_failures"] > 0
        # At-least-once: records after the lowest failed one are written again; the summary counts them.
        assert cloud.last_collector is not None
        assert summary.duplicates == len(outputs) + len(cloud.last_collector.dead) - 2_000 > 0
    else:
        assert summary.poller["partial_failures"] == 0 and summary.duplicates == 0
