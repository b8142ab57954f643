"""Capture and profiles on the hot path (lambda_fn.monitoring.emit) with a fake S3: delivery unchanged by capture
faults, the time bound with a hanging S3, the sampling rate, primary and shadow sampling the same ids, profiles
counting every scored row, and nothing imported with CAPTURE_BUCKET unset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_fn.config import ConfigError, Metric, settings_from
from lambda_fn.monitoring.capture import read_lines
from lambda_fn.monitoring.emit import CaptureConfig, Emitter
from lambda_fn.monitoring.reference import Reference
from lambda_fn.monitoring.release_reference import ReferencePinError
from lambda_fn.monitoring.s3_store import read_profile_body
from lambda_fn.monitoring.sampling import Sampler, hash_id, sampled
from lambda_fn.monitoring.setup import emitter_from, key_from_secret
from lambda_fn.schema import Signature
from lambda_fn.shadow import ShadowScorer
from lambda_fn.sinks import MemorySink
from lambda_fn.stream import StreamRuntime, process_batch
from lambda_fn.variants import Arm, Variants
from tests.conftest import ROOT
from tests.helpers import fake_model, kinesis_event
from tests.service_fakes import FakeS3

SIG = Signature.from_columns([{"name": "x", "type": "double"}])
BUCKET = "capture-bucket"
DEPLOYMENT = {"name": "d", "version": "1", "sha256": "0" * 64}


class Doubler:
    def predict(self, x: Any) -> Any:
        if (x[:, 0] == 666).any():
            raise ValueError("the devil's row")
        return x[:, 0] * 2


MODEL = fake_model(Doubler(), SIG, name="d")
REFERENCE = Reference.build({"x": np.linspace(0, 100, 2000)}, np.linspace(0, 200, 2000))


class Recorder:
    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def add_metric(self, name: str, unit: Any, value: float) -> None:
        self.values[name] = self.values.get(name, 0) + value


def emitter(s3: FakeS3, *, rate: float = 0.1, timeout_s: float = 2.0, reference: Reference | None = REFERENCE,
            raw: bool = False, id_key: bytes | None = None) -> Emitter:  # fmt: skip
    sampler = Sampler(rate, id_key or b"servingkit-capture-sampling-v1", id_key)
    return Emitter(CaptureConfig(BUCKET, "monitoring", sampler, timeout_s, raw, reference), lambda: s3)


def items(n: int, poison_every: int = 0) -> list[Any]:
    out: list[Any] = []
    for i in range(n):
        poison = poison_every and i % poison_every == 0
        out.append(b"poison" if poison else {"id": f"r-{i}", "f": {"x": float(i % 100)}})
    return out


def runtime(em: Emitter | None, **kw: Any) -> StreamRuntime:
    return StreamRuntime(model=lambda: MODEL, output=MemorySink(), dlq=MemorySink(), features_field="f",
                         id_field="id", capture=em, deployment=dict(DEPLOYMENT), **kw)  # fmt: skip


def captured(s3: FakeS3, variant: str = "primary") -> list[dict[str, Any]]:
    return [r for k in s3.keys(f"/variant={variant}/") if k.endswith(".jsonl.gz") for r in read_lines(s3.objects[k])]


def profile_rows(s3: FakeS3, variant: str = "primary") -> int:
    keys = [k for k in s3.keys(f"/variant={variant}/") if "/profiles/" in k]
    return sum(read_profile_body(s3.objects[k], REFERENCE)[1].rows for k in keys)


def outputs_once(rt: StreamRuntime, n: int, start_seq: int) -> None:
    """Every input record is exactly one prediction or one dead letter."""
    seqs = [o["source"]["sequence_number"] for o in rt.output.json()]  # type: ignore[attr-defined]
    seqs += [d["sequence_number"] for d in rt.dlq.json()]  # type: ignore[attr-defined]
    assert sorted(seqs, key=int) == [str(start_seq + i) for i in range(n)]


def test_a_batch_is_profiled_whole_and_sampled_by_id_under_the_hive_layout() -> None:
    s3 = FakeS3()
    rt = runtime(emitter(s3))
    metrics = Recorder()
    batch = items(3000, poison_every=50)
    assert process_batch(kinesis_event(batch, start_seq=100), rt, metrics) == {"batchItemFailures": []}
    outputs_once(rt, len(batch), 100)
    scored = [b["id"] for b in batch if isinstance(b, dict)]
    assert profile_rows(s3) == len(scored)  # every scored row, not only the sampled ones
    records = captured(s3)
    assert sorted(r["eventMetadata"]["inferenceId"] for r in records) == sorted(i for i in scored if sampled(i, 0.1))
    first = records[0]
    assert first["captureData"]["endpointInput"]["data"].keys() == {"x"}
    assert first["captureData"]["endpointOutput"]["data"] == 2 * first["captureData"]["endpointInput"]["data"]["x"]
    assert first["model"] == {"name": "d", "version": "1", "sha256": "0" * 64} and first["variant"] == "primary"
    assert first["source"]["shard_id"] and first["source"]["sequence_number"].isdigit()
    assert "rawInput" not in first["captureData"]
    key = s3.keys(".jsonl.gz")[0]
    assert key.startswith(f"{BUCKET}/monitoring/capture/model=d/sha256={'0' * 64}/variant=primary/date=")
    assert "/hour=" in key
    assert metrics.values[Metric.CAPTURED_RECORDS] == len(records)
    assert metrics.values[Metric.CAPTURE_ERRORS] == 0 and metrics.values[Metric.PROFILES_WRITTEN] == 1


def test_raw_payload_and_hashed_ids_when_asked() -> None:
    s3 = FakeS3()
    key = key_from_secret("a secret from Secrets Manager")
    process_batch(kinesis_event(items(200), start_seq=1), runtime(emitter(s3, rate=1.0, raw=True, id_key=key)))
    records = captured(s3)
    assert len(records) == 200
    assert {r["eventMetadata"]["inferenceId"] for r in records} == {hash_id(f"r-{i}", key) for i in range(200)}
    assert all(r["captureData"]["rawInput"]["data"].keys() == {"x"} for r in records)


FAULTS: dict[str, Callable[[str], str | None]] = {
    "errors": lambda key: "error",
    "throttling": lambda key: "throttle",
    "profiles fail": lambda key: "error" if "/profiles/" in key else None,
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_capture_faults_never_change_what_the_batch_delivers(fault: str) -> None:
    s3 = FakeS3(FAULTS[fault])
    rt = runtime(emitter(s3, rate=0.5))
    metrics = Recorder()
    batch = items(400, poison_every=7)
    assert process_batch(kinesis_event(batch, start_seq=1), rt, metrics) == {"batchItemFailures": []}
    outputs_once(rt, len(batch), 1)
    assert metrics.values[Metric.CAPTURE_ERRORS] >= 1
    assert metrics.values[Metric.RECORDS_SCORED] + metrics.values[Metric.RECORDS_DEAD_LETTERED] == len(batch)
    if fault != "profiles fail":
        assert metrics.values[Metric.CAPTURED_RECORDS] == 0 and metrics.values[Metric.CAPTURE_DROPPED] > 0


def test_a_hanging_s3_holds_a_batch_at_most_the_bound_and_later_batches_are_not_held() -> None:
    s3 = FakeS3(lambda key: "hang")
    bound = 0.15
    em = emitter(s3, timeout_s=bound)
    try:
        off, on = runtime(None), runtime(em)
        process_batch(kinesis_event(items(500), start_seq=1), off)  # warm
        started = time.perf_counter()
        process_batch(kinesis_event(items(500), start_seq=1), off)
        baseline = time.perf_counter() - started
        elapsed = []
        for n in range(4):  # the first two fill the two workers; then each batch is skipped (busy) at once
            metrics = Recorder()
            started = time.perf_counter()
            resp = process_batch(kinesis_event(items(500), start_seq=1000 * (n + 1)), on, metrics)
            elapsed.append(time.perf_counter() - started)
            assert resp == {"batchItemFailures": []}
            assert metrics.values[Metric.CAPTURE_ERRORS] >= 1
        assert max(elapsed) <= baseline + bound + 0.25, (baseline, elapsed)
        assert max(elapsed[2:]) <= baseline + 0.25, "a busy capture must not wait at all"
        assert len(on.output.entries) == 4 * 500  # type: ignore[attr-defined]
    finally:
        s3.release()
        em.close()


def test_the_sampling_rate_holds_and_is_stable_per_id() -> None:
    ids = [f"ride-{i:07d}" for i in range(40_000)]
    for rate in (0.01, 0.1, 0.5):
        picked = Sampler(rate).pick(ids)
        n = len(ids)
        assert abs(len(picked) - rate * n) <= 4 * (rate * (1 - rate) * n) ** 0.5
        assert [ids[i] for i in picked] == [i for i in ids if sampled(i, rate)]  # the scalar rule, vectorized
    assert set(Sampler(0.1).pick(ids)) <= set(Sampler(0.2).pick(ids))  # raising the rate only adds records


def _wait_for(check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


def test_primary_and_shadow_capture_the_same_ids_and_the_shadow_is_its_own_variant() -> None:
    s3 = FakeS3()
    em = emitter(s3, rate=0.2)
    shadow_model = fake_model(Doubler(), SIG, name="shadow-model", sha256="1" * 64)
    shadow = ShadowScorer(lambda: shadow_model, 5.0)
    rt = runtime(em, shadow=shadow)
    try:
        batch = items(1000, poison_every=9)
        process_batch(kinesis_event(batch, start_seq=1), rt)
        _wait_for(lambda: profile_rows(s3, "shadow") > 0 and bool(captured(s3, "shadow")))
        primary, in_shadow = captured(s3), captured(s3, "shadow")
        assert {r["eventMetadata"]["inferenceId"] for r in primary} == {
            r["eventMetadata"]["inferenceId"] for r in in_shadow
        }
        assert {r["model"]["name"] for r in in_shadow} == {"shadow-model"}
        assert profile_rows(s3, "shadow") == profile_rows(s3) == sum(isinstance(b, dict) for b in batch)
        # Filed under the deployment's model, beside the primary, so one monitor compares them.
        assert all(f"sha256={'0' * 64}" in k for k in s3.keys("/variant=shadow/"))
    finally:
        shadow.close()
        em.close()


def test_ab_arms_are_profiled_per_variant_and_every_scored_row_counts_once() -> None:
    s3 = FakeS3()
    second = fake_model(Doubler(), SIG, name="b", sha256="2" * 64)
    rt = runtime(emitter(s3, rate=1.0))
    rt.variants = Variants([Arm("a", 1.0, lambda: MODEL), Arm("b", 1.0, lambda: second)])
    batch = items(800, poison_every=11)
    process_batch(kinesis_event(batch, start_seq=1), rt)
    a, b = profile_rows(s3, "a"), profile_rows(s3, "b")
    assert a > 0 and b > 0 and a + b == sum(isinstance(x, dict) for x in batch)
    assert len(captured(s3, "a")) == a and len(captured(s3, "b")) == b
    assert {r["model"]["name"] for r in captured(s3, "b")} == {"b"}


def test_without_a_reference_capture_runs_and_no_profile_is_written() -> None:
    s3 = FakeS3()
    process_batch(kinesis_event(items(300), start_seq=1), runtime(emitter(s3, rate=1.0, reference=None)))
    assert len(captured(s3)) == 300 and not s3.keys("/profiles/")


def test_settings_wire_the_emitter_a_tampered_reference_fails_and_a_secret_keys_the_hashes(tmp_path: Any) -> None:
    path = tmp_path / "reference.json"
    path.write_bytes(REFERENCE.to_json())
    env = {"MODEL_URI": "/m", "CAPTURE_BUCKET": BUCKET, "CAPTURE_SAMPLE_RATE": "0.25", "CAPTURE_PAYLOAD": "raw",
           "MONITOR_REFERENCE_URI": str(path), "MONITOR_REFERENCE_SHA256": REFERENCE.sha256,
           "CAPTURE_ID_KEY_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:capture-key"}  # fmt: skip

    class Secrets:
        def get_secret_value(self, SecretId: str) -> dict[str, str]:
            assert SecretId == env["CAPTURE_ID_KEY_SECRET_ARN"]
            return {"SecretString": "k" * 100}

    em = emitter_from(settings_from(env), lambda service: Secrets(), FakeS3)
    assert em.config.sampler.rate == 0.25 and em.config.raw and em.config.reference is not None
    assert em.config.sampler.id_key == key_from_secret("k" * 100) == em.config.sampler.key
    em.close()
    with pytest.raises(ReferencePinError):
        emitter_from(settings_from({**env, "MONITOR_REFERENCE_SHA256": "f" * 64}), lambda service: Secrets(), FakeS3)

    class NoSecret:
        def get_secret_value(self, SecretId: str) -> dict[str, str]:
            raise RuntimeError("AccessDenied")

    with pytest.raises(ConfigError, match="CAPTURE_ID_KEY_SECRET_ARN"):
        emitter_from(settings_from(env), lambda service: NoSecret(), FakeS3)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"CAPTURE_SAMPLE_RATE": "1.5"}, "CAPTURE_SAMPLE_RATE"),
        ({"CAPTURE_PAYLOAD": "everything"}, "CAPTURE_PAYLOAD"),
        ({"CAPTURE_TIMEOUT_MS": "0"}, "CAPTURE_TIMEOUT_MS"),
        ({"CAPTURE_BUCKET": "Not_A_Bucket"}, "CAPTURE_BUCKET"),
        ({"CAPTURE_ID_KEY_SECRET_ARN": "my-secret"}, "CAPTURE_ID_KEY_SECRET_ARN"),
        ({"MONITOR_REFERENCE_URI": "s3://b/reference.json"}, "MONITOR_REFERENCE_SHA256"),
        ({"MONITOR_REFERENCE_SHA256": "xyz", "MONITOR_REFERENCE_URI": "s3://b/r"}, "MONITOR_REFERENCE_SHA256"),
    ],
)
def test_capture_settings_errors_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        settings_from({"MODEL_URI": "/m", **env})


def test_capture_settings_defaults() -> None:
    s = settings_from({"MODEL_URI": "/m"})
    assert (s.capture_bucket, s.capture_prefix, s.capture_sample_rate, s.capture_payload) == (
        None, "monitoring", 0.1, "features")  # fmt: skip
    assert (s.capture_timeout_ms, s.capture_id_key_secret_arn, s.monitor_reference_uri) == (200, None, None)


_OFF = """
import json, sys
from lambda_fn import runtime
from lambda_fn.sinks import MemorySink
from lambda_fn.stream import StreamRuntime, process_batch
from tests.helpers import fake_model, kinesis_event
from lambda_fn.schema import Signature
class Doubler:
    def predict(self, x):
        return x[:, 0] * 2
MODEL = fake_model(Doubler(), Signature.from_columns([{"name": "x", "type": "double"}]))
assert runtime.capture() is None
rt = StreamRuntime(model=lambda: MODEL, output=MemorySink(), dlq=MemorySink(), features_field="f", id_field="id")
process_batch(kinesis_event([{"id": "a", "f": {"x": 1.0}}], start_seq=1), rt)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("lambda_fn.monitoring"))))
"""


def test_with_capture_bucket_unset_nothing_of_monitoring_is_imported() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAPTURE_", "MONITOR_"))}
    env.update(MODEL_URI="/nowhere", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", _OFF], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_record_lines_are_the_bytes_encode_line_writes() -> None:
    from datetime import UTC, datetime

    from lambda_fn.monitoring.capture import CaptureRecord, ModelIdentity, encode_line, record_lines

    model = ModelIdentity("m\u00e9", "1", "ab" * 32)
    at = datetime(2026, 12, 1, 11, 5, 9, 123456, tzinfo=UTC)
    columns: dict[str, list[Any]] = {
        "s": ["a", '\u00fcber "q" \\ \n', "\ud800", None, "x"],
        "f": [1.5, float("nan"), 2.0, -0.0, 1e300],
        "i": [1, np.int64(7), 3, True, 2**70],
    }
    preds: list[Any] = [3.25, 1, "label", float("inf"), np.float64(0.1)]
    sources: list[Any] = [{"shard_id": "s", "sequence_number": "1", "sub_sequence_number": None}, None,
                          {"request_id": "r", "row": 2}, None, {"x": float("nan")}]  # fmt: skip
    raws: list[Any] = [{"a": 1}, {"b": [1, 2]}, {"c": None}, {"d": "\u00e9"}, {"e": float("nan")}]
    ids, events = [f"id-{i}" for i in range(5)], [f"e-{i}" for i in range(5)]
    for raw in (None, raws):
        lines = record_lines(columns, preds, ids, events, sources, raw, model, "v/1", at).lines
        assert len(lines) == 5
        for i, line in enumerate(lines):
            record = CaptureRecord(ids[i], events[i], {k: v[i] for k, v in columns.items()}, preds[i], model, "v/1",
                                   at, sources[i], None if raw is None else raw[i])  # fmt: skip
            assert line == encode_line(record), i
            json.loads(line)


def test_record_lines_of_uniform_columns_are_the_bytes_encode_line_writes() -> None:
    """The one-pass column writers (only strings, only numbers, only booleans) and the `%` template: names,
    model and variant holding `%`, NaN among floats, a lone surrogate in a string column, all as `encode_line`."""
    from datetime import UTC, datetime

    from lambda_fn.monitoring.capture import CaptureRecord, ModelIdentity, encode_line, record_lines

    model = ModelIdentity("m%s 100%", "1", "cd" * 32)
    at = datetime(2026, 12, 1, 11, 5, 9, tzinfo=UTC)
    n = 6
    columns: dict[str, list[Any]] = {
        "PU_DO%s": [f"{i}_{i + 1}" for i in range(n)],
        'q"%d': ["a", "b", "\ud800", "\u00e9", "%s", "x"],
        "f": [0.1, 1e16, float("nan"), -0.0, 3.0, 1e-7],
        "i": [0, -1, 2**70, 7, 8, 9],
        "b": [True, False, True, True, False, True],
    }
    preds: list[Any] = [1.5, 2.5, 3.5, float("-inf"), 5.0, 6.0]
    sources: list[Any] = [{"shard_id": "s%", "sequence_number": str(i), "sub_sequence_number": None} for i in range(n)]
    ids, events = [f"id-{i}%" for i in range(n)], [f"e-{i}" for i in range(n)]
    lines = record_lines(columns, preds, ids, events, sources, None, model, "v%1", at).lines
    assert len(lines) == n
    for i, line in enumerate(lines):
        record = CaptureRecord(ids[i], events[i], {k: v[i] for k, v in columns.items()}, preds[i], model, "v%1",
                               at, sources[i])  # fmt: skip
        assert line == encode_line(record), i
        assert json.loads(line)["captureData"]["endpointInput"]["data"]["PU_DO%s"] == f"{i}_{i + 1}"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.floats(), st.floats(1e-4, 1e16), st.floats(-1e16, -1e-4), st.sampled_from(
    [0.0, -0.0, 1e-4, 9.999999999999998e15, 1e16, 1e-5, 0.1, 3.0])), min_size=1, max_size=20))  # fmt: skip
def test_float_columns_are_written_as_encode_line_writes_them(values: list[float]) -> None:
    """A float column (orjson where it writes what repr does, repr elsewhere; NaN and infinities the slow path)."""
    from datetime import UTC, datetime

    from lambda_fn.monitoring.capture import CaptureRecord, ModelIdentity, encode_line, record_lines

    model, at, n = ModelIdentity("m", "1", "ef" * 32), datetime(2026, 12, 1, tzinfo=UTC), len(values)
    ids = [f"id-{i}" for i in range(n)]
    lines = record_lines({"f": values}, values, ids, ids, [None] * n, None, model, "primary", at).lines
    for i, line in enumerate(lines):
        assert line == encode_line(CaptureRecord(ids[i], ids[i], {"f": values[i]}, values[i], model, "primary", at))


cells = st.one_of(st.none(), st.text(max_size=6))


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 25), data=st.data())
def test_the_captured_rows_are_read_from_the_columns_as_pandas_reads_them(n: int, data: st.DataObject) -> None:
    """`Columns.take` (the codes of a factorized string column, numpy's own values, else pandas) gives exactly
    what `frame.iloc[rows][name].tolist()` gives, for every kind of column a hook can return."""
    import pandas as pd

    from lambda_fn.monitoring.columns import Columns

    texts = data.draw(st.lists(cells, min_size=n, max_size=n))
    floats = data.draw(st.lists(st.floats(allow_nan=True), min_size=n, max_size=n))
    frame = pd.DataFrame({
        "s": pd.array(texts, dtype="str"),
        "s_other": pd.array(texts, dtype="str"),  # a string column that is not factorized
        "f": floats,
        "i": np.arange(n, dtype=np.int64) * 7 - 3,
        "b": [i % 3 == 0 for i in range(n)],
        "o": np.array([t if i % 2 else i for i, t in enumerate(texts)], dtype=object),
        "nullable": pd.array([None if i % 4 == 0 else i for i in range(n)], dtype="Int64"),
        "t": pd.date_range("2026-12-01", periods=n, freq="min"),
        "c": pd.Categorical([f"k{i % 3}" for i in range(n)]),
    })  # fmt: skip
    rows = sorted(data.draw(st.sets(st.integers(0, n - 1), max_size=n)))
    taken = Columns(frame, strings={"s"}).take(rows)
    expected = {str(c): frame.iloc[rows][c].tolist() for c in frame.columns}
    assert list(taken) == list(expected)
    for name, values in expected.items():  # NaN != NaN: compare their reprs and types
        assert [(type(v), repr(v)) for v in taken[name]] == [(type(v), repr(v)) for v in values], name
