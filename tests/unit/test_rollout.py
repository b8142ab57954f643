"""A/B routing and shadow scoring without AWS: stable split, one predict per variant, bounded shadow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from lambda_fn.config import ConfigError, Metric, settings_from
from lambda_fn.live import LiveModels, after_request, choose, live_models_from
from lambda_fn.model_store import LoadedModel
from lambda_fn.schema import Signature
from lambda_fn.shadow import SHADOW_LOAD_BACKOFF_S, ShadowInput, ShadowScorer, compare
from lambda_fn.sinks import MemorySink
from lambda_fn.stream import StreamRuntime, process_batch
from lambda_fn.variants import Arm, TrafficSplit, Variants, route_point
from tests.helpers import fake_model, kinesis_event

SIG = Signature.from_columns([{"name": "x", "type": "double"}])


class Affine:
    """x * a + b, counting predict calls; `delay` makes it slow, `broken` makes it fail on every row."""

    def __init__(self, a: float, b: float = 0.0, delay: float = 0.0, broken: bool = False) -> None:
        self.a, self.b, self.delay, self.broken = a, b, delay, broken
        self.calls = 0
        self.done = threading.Event()

    def predict(self, x: Any) -> Any:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        self.done.set()
        if self.broken:
            raise RuntimeError("shadow model is broken")
        return x[:, 0] * self.a + self.b


def loaded(name: str, estimator: Any) -> LoadedModel:
    return fake_model(estimator, SIG, name=name, sha256=name[0] * 64)


class Recorder:
    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}

    def add_metric(self, name: str, unit: Any, value: float) -> None:
        self.values.setdefault(name, []).append(value)


def payloads(n: int, poison_every: int = 0) -> list[Any]:
    out: list[Any] = []
    for i in range(n):
        if poison_every and i % poison_every == 0:
            out.append({"id": f"r{i}", "f": {"x": "not a number"}})
        else:
            out.append({"id": f"r{i}", "f": {"x": float(i)}})
    return out


# --------------------------------------------------------------------------- routing


def test_split_follows_the_weights_within_tolerance() -> None:
    router = TrafficSplit([70, 20, 10])
    counts = Counter(router.pick(f"ride-{i}") for i in range(20_000))
    shares = [counts[k] / 20_000 for k in range(3)]
    assert shares == pytest.approx([0.7, 0.2, 0.1], abs=0.015)


def test_route_is_stable_per_id_and_independent_of_python_hash_seed() -> None:
    router = TrafficSplit([1, 1])
    ids = [f"id-{i}" for i in range(200)]
    here = [router.pick(i) for i in ids]
    assert here == [router.pick(i) for i in reversed(ids)][::-1]
    code = (
        "import json,sys; from lambda_fn.variants import TrafficSplit; r=TrafficSplit([1,1]);"
        "print(json.dumps([r.pick(f'id-{i}') for i in range(200)]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(Path.cwd())}
    other = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert json.loads(other.stdout) == here
    assert 0 <= route_point("x") < 1


def test_growing_a_variant_only_moves_ids_towards_it() -> None:
    """Cumulative buckets: raising the challenger from 10% to 20% never moves a challenger id back."""
    before, after = TrafficSplit([90, 10]), TrafficSplit([80, 20])
    ids = [f"u{i}" for i in range(5_000)]
    moved_back = [i for i in ids if before.pick(i) == 1 and after.pick(i) == 0]
    assert moved_back == []


def test_variants_score_with_one_predict_call_per_variant_and_label_rows() -> None:
    a, b = Affine(1.0), Affine(10.0)
    ma, mb = loaded("alpha", a), loaded("beta", b)
    variants = Variants([Arm("champion", 50, lambda: ma), Arm("challenger", 50, lambda: mb)])
    keys = [f"k{i}" for i in range(400)]
    routed = variants.score([{"x": float(i)} for i in range(400)], keys)
    assert a.calls == 1 and b.calls == 1
    for i, arm in enumerate(routed.arm_of):
        assert routed.result.predictions[i] == float(i) * (1.0 if arm == 0 else 10.0)
        assert arm == variants.split.pick(keys[i])
    assert routed.identities[0]["variant"] == "champion" and routed.identities[1]["name"] == "beta"
    assert [s.rows for s in routed.stats] == [routed.arm_of.count(0), routed.arm_of.count(1)]


def test_variants_setting_is_validated_with_the_variable_named() -> None:
    base = {"MODEL_URI": "s3://b/m"}
    bad = [
        '[{"name": "a", "weight": 0}]',
        '[{"name": "a", "weight": -1}]',
        '[{"name": "a", "weight": 1}, {"name": "a", "weight": 2, "uri": "s3://b/x"}]',
        '[{"name": "a", "weight": 1}, {"name": "b", "weight": 2}]',
        '{"name": "a"}',
        "not json",
        '[{"name": "a", "weight": 1, "uri": "http://x"}]',
        '[{"name": "a", "weight": 1, "sha256": "abc"}]',
    ]
    for value in bad:
        with pytest.raises(ConfigError, match="MODEL_VARIANTS"):
            settings_from({**base, "MODEL_VARIANTS": value})
    ok = settings_from(
        {**base, "MODEL_VARIANTS": '[{"name": "a", "weight": 3}, {"name": "b", "weight": 1, "uri": "s3://b/n"}]'}
    )
    assert [(v.name, v.weight, v.uri) for v in ok.model_variants] == [("a", 3.0, None), ("b", 1.0, "s3://b/n")]


def test_rollout_from_settings_points_each_arm_and_the_shadow_at_their_artifacts() -> None:
    settings = settings_from(
        {
            "MODEL_URI": "s3://b/primary",
            "MODEL_NAME": "taxi",
            "SHADOW_MODEL_URI": "s3://b/shadow",
            "SHADOW_TIMEOUT_MS": "250",
            "MODEL_VARIANTS": '[{"name": "a", "weight": 1}, {"name": "b", "weight": 1, "uri": "s3://b/other"}]',
        }
    )
    seen: list[tuple[str, str | None]] = []

    def load(s: Any) -> LoadedModel:
        seen.append((s.model_uri, s.model_name))
        return loaded("m", Affine(1))

    ro = live_models_from(settings, load)
    assert ro.variants is not None and ro.shadow is not None
    for arm in ro.variants.arms:
        arm.model()
    ro.shadow.model()
    assert seen == [("s3://b/primary", "taxi"), ("s3://b/other", None), ("s3://b/shadow", None)]
    assert ro.shadow.timeout_s == 0.25
    ro.shadow.close()


def test_stream_batch_with_variants_labels_outputs_and_emits_per_variant_metrics() -> None:
    a, b = Affine(1.0), Affine(-1.0)
    ma, mb = loaded("alpha", a), loaded("beta", b)
    emitted: dict[str, dict[str, float]] = {}
    out, dlq = MemorySink(), MemorySink()
    rt = StreamRuntime(
        model=lambda: pytest.fail("the primary is not used when variants are set"),
        output=out,
        dlq=dlq,
        features_field="f",
        id_field="id",
        variants=Variants([Arm("blue", 1, lambda: ma), Arm("green", 1, lambda: mb)]),
        variant_metrics=lambda v, values: emitted.setdefault(v, {}).update({n: x for n, _, x in values}),
    )
    response = process_batch(kinesis_event(payloads(300, poison_every=7), start_seq=1), rt)
    assert response == {"batchItemFailures": []}
    assert len(out.entries) + len(dlq.entries) == 300
    assert a.calls == 1 and b.calls == 1
    for rec in out.json():
        sign = 1 if rec["model"]["variant"] == "blue" else -1
        assert rec["model"]["name"] == {"blue": "alpha", "green": "beta"}[rec["model"]["variant"]]
        assert rec["prediction"] == sign * float(rec["id"][1:])
    for d in dlq.json():
        assert d["reason"] == "schema_violation" and d["model"]["variant"] in ("blue", "green")
    assert {v: m[Metric.RECORDS_IN] for v, m in emitted.items()} == dict(
        Counter(r["model"]["variant"] for r in out.json()) + Counter(d["model"]["variant"] for d in dlq.json())
    )


# --------------------------------------------------------------------------- shadow


def test_compare_counts_agreement_and_mean_absolute_difference() -> None:
    compared, agreement, mad = compare([1.0, 2.0, 3.0], [1.0, 2.5, 5.0], [True, True, True])
    assert (compared, agreement, mad) == (3, 1 / 3, 2.5 / 3)
    assert compare(["a", "b"], ["a", "c"], [True, True]) == (2, 0.5, None)
    assert compare([1.0, None], [2.0, 3.0], [True, False]) == (1, 0.0, 1.0)
    assert compare([], [], []) == (0, None, None)


def _stream(shadow: ShadowScorer | None) -> tuple[StreamRuntime, MemorySink, MemorySink]:
    out, dlq = MemorySink(), MemorySink()
    primary = loaded("primary", Affine(2.0))
    return (
        StreamRuntime(model=lambda: primary, output=out, dlq=dlq, features_field="f", id_field="id", shadow=shadow),
        out,
        dlq,
    )


def test_healthy_shadow_leaves_primary_output_unchanged_and_publishes_apart() -> None:
    event = kinesis_event(payloads(120, poison_every=10), start_seq=100)
    base_rt, base_out, base_dlq = _stream(None)
    assert process_batch(event, base_rt) == {"batchItemFailures": []}

    shadow_model = loaded("shadow", Affine(2.0, b=0.5))
    sink = MemorySink()
    shadow = ShadowScorer(lambda: shadow_model, timeout_s=5, sink=sink)
    rt, out, dlq = _stream(shadow)
    metrics = Recorder()
    assert process_batch(event, rt, metrics) == {"batchItemFailures": []}
    assert out.json() == base_out.json()
    assert [e.data for e in out.entries] == [e.data for e in base_out.entries]
    assert len(dlq.entries) == len(base_dlq.entries) == 12
    shadow_records = sink.json()
    assert len(shadow_records) == 120  # one per decoded record, the 12 that both models reject included
    rejected = [r for r in shadow_records if "error" in r["shadow"]]
    assert len(rejected) == 12 and all(r["primary"]["error"] for r in rejected)
    assert all(r["kind"] == "shadow" and "prediction" not in r for r in shadow_records)
    first = shadow_records[1]
    assert first["shadow"]["prediction"] == first["primary"]["prediction"] + 0.5
    assert first["shadow"]["model"]["name"] == "shadow" and first["primary"]["model"]["name"] == "primary"
    assert first["id"] == "r1" and first["source"]["sequence_number"] == "101"
    assert metrics.values[Metric.SHADOW_RECORDS] == [108]
    assert metrics.values[Metric.SHADOW_ROW_ERRORS] == [12]
    assert metrics.values[Metric.SHADOW_UNPUBLISHED] == [0]
    assert metrics.values[Metric.SHADOW_MEAN_ABS_DIFF] == [pytest.approx(0.5)]
    assert metrics.values[Metric.SHADOW_AGREEMENT] == [0.0]
    assert metrics.values[Metric.SHADOW_FAILURES] == [0] and metrics.values[Metric.SHADOW_TIMEOUTS] == [0]
    shadow.close()


def test_broken_shadow_never_fails_the_primary_batch_nor_loses_a_record() -> None:
    event = kinesis_event(payloads(50, poison_every=5), start_seq=1)
    base_rt, base_out, _ = _stream(None)
    process_batch(event, base_rt)
    shadow = ShadowScorer(lambda: loaded("shadow", Affine(1, broken=True)), timeout_s=5)
    rt, out, dlq = _stream(shadow)
    metrics = Recorder()
    assert process_batch(event, rt, metrics) == {"batchItemFailures": []}
    assert [e.data for e in out.entries] == [e.data for e in base_out.entries]
    assert len(out.entries) + len(dlq.entries) == 50
    assert metrics.values[Metric.SHADOW_FAILURES] == [1]
    assert metrics.values[Metric.SHADOW_RECORDS] == [0]
    shadow.close()


def test_unloadable_shadow_is_not_reloaded_on_every_batch() -> None:
    attempts = []
    now = [1000.0]

    def load() -> LoadedModel:
        attempts.append(now[0])
        raise FileNotFoundError("no shadow artifact")

    shadow = ShadowScorer(load, timeout_s=5, clock=lambda: now[0])
    job = ShadowInput(features=[{"x": 1.0}], primary=[2.0], primary_ok=[True], primary_model={"name": "p"})
    assert shadow.start(job).wait().status == "failed"
    report = shadow.start(job).wait()
    assert report.status == "failed" and "next load attempt" in (report.detail or "")
    now[0] += SHADOW_LOAD_BACKOFF_S + 1
    shadow.start(job).wait()
    assert attempts == [1000.0, 1000.0 + SHADOW_LOAD_BACKOFF_S + 1]
    shadow.close()


def test_slow_shadow_delays_the_primary_at_most_its_timeout_then_is_skipped_while_busy() -> None:
    slow = Affine(1.0, delay=1.5)
    shadow = ShadowScorer(lambda: loaded("shadow", slow), timeout_s=0.1)
    base_rt, base_out, _ = _stream(None)
    event = kinesis_event(payloads(40), start_seq=1)
    started = time.perf_counter()
    process_batch(event, base_rt)
    floor = time.perf_counter() - started

    rt, out, _ = _stream(shadow)
    metrics = Recorder()
    started = time.perf_counter()
    assert process_batch(event, rt, metrics) == {"batchItemFailures": []}
    elapsed = time.perf_counter() - started
    assert elapsed < floor + 0.1 + 0.5  # the timeout plus scheduling slack, far below the shadow's 1.5 s
    assert metrics.values[Metric.SHADOW_TIMEOUTS] == [1]
    assert [e.data for e in out.entries] == [e.data for e in base_out.entries]

    metrics = Recorder()
    process_batch(event, rt, metrics)  # the first shadow run is still sleeping
    assert metrics.values[Metric.SHADOW_SKIPPED] == [40]
    assert slow.calls == 1
    shadow.close()


def test_api_requests_are_routed_whole_by_key_and_shadowed_without_touching_the_answer() -> None:
    primary, other = loaded("primary", Affine(1.0)), loaded("other", Affine(3.0))
    plain = LiveModels()
    assert choose(plain, "k", lambda: primary) == (primary, primary.identity)

    ro = LiveModels(variants=Variants([Arm("a", 1, lambda: primary), Arm("b", 1, lambda: other)]))
    picks = {choose(ro, f"user-{i}", lambda: primary)[1]["variant"] for i in range(50)}
    assert picks == {"a", "b"}
    model, identity = choose(ro, "user-7", lambda: primary)
    assert identity == {**model.identity, "variant": ro.variants.pick("user-7").name}  # type: ignore[union-attr]

    emitted: list[tuple[str, list[tuple[str, str, float]]]] = []
    ro.shadow = ShadowScorer(lambda: loaded("shadow", Affine(1, broken=True)), timeout_s=5)
    rows = [{"x": float(i)} for i in range(10)]
    predictions = [float(i) for i in range(10)]
    report = after_request(ro, rows, predictions, identity, [], lambda v, m: emitted.append((v, list(m))))
    assert report is not None and report.status == "failed" and predictions == [float(i) for i in range(10)]
    counts = [(Metric.RECORDS_IN, "Count", 10.0), (Metric.RECORDS_SCORED, "Count", 10.0)]
    assert emitted == [(identity["variant"], counts)]
    ro.shadow.close()


def test_shadow_beside_variants_compares_with_the_variant_that_answered() -> None:
    ma, mb = loaded("alpha", Affine(1.0)), loaded("beta", Affine(3.0))
    sink = MemorySink()
    shadow = ShadowScorer(lambda: loaded("shadow", Affine(1.0)), timeout_s=5, sink=sink)
    out = MemorySink()
    rt = StreamRuntime(
        model=lambda: ma,
        output=out,
        dlq=MemorySink(),
        features_field="f",
        id_field="id",
        variants=Variants([Arm("a", 1, lambda: ma), Arm("b", 1, lambda: mb)]),
        shadow=shadow,
    )
    metrics = Recorder()
    assert process_batch(kinesis_event(payloads(100), start_seq=1), rt, metrics) == {"batchItemFailures": []}
    served = {o["id"]: o for o in out.json()}
    records = sink.json()
    assert len(records) == 100
    for r in records:
        assert r["primary"]["model"] == served[r["id"]]["model"]
        assert r["primary"]["prediction"] == served[r["id"]]["prediction"]
    # The shadow equals variant a (x * 1); b (x * 3) agrees with it only at x == 0.
    agree = sum(1 for o in served.values() if o["model"]["variant"] == "a" or o["prediction"] == 0)
    assert metrics.values[Metric.SHADOW_AGREEMENT] == [pytest.approx(agree)]
    shadow.close()
