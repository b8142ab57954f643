"""The delivery guarantee as properties of process_batch (issue 11): hostile producers, misbehaving models,
unreliable sinks, and capture (lambda_fn.monitoring.emit) on with its S3 failing, throttling or hanging.

For any event: process_batch raises only for a systemic model fault, and then before writing anything;
every user record becomes exactly one prediction or one dead letter, or sits at or after the reported
checkpoint; every output is strict JSON within the services' limits (the fake clients refuse what Kinesis
and SQS refuse); and redelivering from each checkpoint, as Lambda does, loses nothing.
"""

from __future__ import annotations

import random
import threading
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lambda_fn.monitoring.emit import CaptureConfig, Emitter
from lambda_fn.monitoring.reference import Reference
from lambda_fn.monitoring.sampling import Sampler
from lambda_fn.scoring import ModelBatchError, apply_hook
from lambda_fn.shadow import ShadowScorer
from lambda_fn.sinks import KinesisSink, RetryPolicy, SqsSink
from lambda_fn.stream import StreamRuntime, process_batch
from lambda_fn.variants import Arm, Variants
from tests.fuzzing import fuzz
from tests.helpers import fake_model
from tests.service_fakes import FakeS3, StrictKinesis, StrictSqs
from tests.strategies import SIG, Faults, Ledger, Model, check_outputs, events, faults, hook

pytestmark = pytest.mark.fuzz
NO_SLEEP = RetryPolicy(max_attempts=2, base_delay_s=0, sleep=lambda _s: None)
MAX_ROUNDS = 30
FAULTY_ROUNDS = 3  # sinks misbehave on the first deliveries, then recover (as a throttled stream does)
# The signature's columns (x, z) as a release's reference would bin them; profiles of the drawn batches use it.
CAPTURE_REFERENCE = Reference.build(
    {"x": np.linspace(-10, 10, 200), "z": np.array(["a", "b"] * 100)}, np.linspace(-20, 20, 200)
)


def _capture(seed: int, rate: float) -> tuple[Emitter, dict[str, str]]:
    """Capture with a fake S3 whose every put fails, throttles, hangs (beyond the bound) or works, at random."""
    rnd = random.Random(seed)
    lock = threading.Lock()

    def fault(key: str) -> str | None:
        with lock:  # the capture's two workers draw from one generator
            return rnd.choice(["error", "throttle", "hang", None, None])

    s3 = FakeS3(fault)
    config = CaptureConfig("capture", "monitoring", Sampler(rate), 0.02, rnd.random() < 0.5, CAPTURE_REFERENCE)
    emitter = Emitter(config, lambda: s3)
    emitter.fake_s3 = s3  # type: ignore[attr-defined]  # released when the example ends
    return emitter, {"name": "m", "version": "1", "sha256": "0" * 64}


def _close_capture(rt: StreamRuntime) -> None:
    if rt.capture is not None:
        rt.capture.fake_s3.release()  # type: ignore[attr-defined]
        rt.capture.close()


@st.composite
def runtimes(draw: st.DrawFn, f: Faults) -> tuple[StreamRuntime, StrictKinesis, StrictSqs, list[Model], StrictKinesis]:
    kinesis = StrictKinesis(f.kinesis, f.throttle)
    sqs = StrictSqs(f.sqs, f.throttle)
    kind = draw(st.sampled_from(["rows", "rows", "rows", *Model.SYSTEMIC]))
    models = [Model(kind)]
    primary = fake_model(models[0], SIG)
    rt = StreamRuntime(
        model=lambda: primary,
        output=KinesisSink(kinesis, "out", NO_SLEEP),
        dlq=SqsSink(sqs, "https://dlq", NO_SLEEP),
        hook=draw(st.sampled_from([None, hook])),
        features_field=draw(st.sampled_from(["f", "f", None])),
        id_field=draw(st.sampled_from(["id", "id", None])),
    )
    if kind == "rows" and draw(st.booleans()):  # A/B: ids route to two models (route keys of any text)
        models.append(Model("rows"))
        second = fake_model(models[1], SIG, name="b")
        rt.variants = Variants([Arm("a", 1.0, lambda: primary), Arm("b", 1.0, lambda: second)])
    shadow_stream = StrictKinesis(f.shadow().kinesis)
    if draw(st.booleans()):  # capture on, its S3 failing, throttling or hanging at random: nothing changes either
        rt.capture, rt.deployment = _capture(draw(st.integers(0, 2**32 - 1)), draw(st.sampled_from([0.0, 0.5, 1.0])))
    if draw(st.booleans()):  # a shadow that misbehaves any way must not change the primary's outcome
        shadow = fake_model(Model(draw(st.sampled_from(["rows", *Model.SYSTEMIC]))), SIG, name="shadow")
        rt.shadow = ShadowScorer(lambda: shadow, 5.0, KinesisSink(shadow_stream, "shadow", NO_SLEEP), rt.hook)
    return rt, kinesis, sqs, models, shadow_stream


def deliver(event: dict[str, Any], expected: list[Any], rt: StreamRuntime, kin: StrictKinesis, sqs: StrictSqs,
            f: Faults, systemic: bool) -> Ledger | None:  # fmt: skip
    """Deliver and redeliver from each checkpoint until done, checking each round; None if the batch raised."""
    ledger = Ledger(expected)
    for n in range(MAX_ROUNDS):
        f.active = n < FAULTY_ROUNDS
        apply_hook(hook, [{"x": 1.0}])  # a warm container: the hook has accepted a row before
        before = (len(kin.records), len(sqs.messages))
        try:
            response = process_batch(event, rt)
        except ModelBatchError:
            assert systemic, "a batch failed although the model works"
            assert (len(kin.records), len(sqs.messages)) == before, "a failing batch wrote outputs"
            return None
        predictions, dead_letters = kin.json()[before[0] :], sqs.json()[before[1] :]
        check_outputs(predictions, dead_letters)
        redeliver = ledger.round(event, response, predictions + dead_letters)
        if redeliver is None:
            ledger.nothing_lost()
            return ledger
        event = redeliver
    raise AssertionError(f"still failing after {MAX_ROUNDS} deliveries with healthy sinks")


@fuzz(150)
@given(st.data())
def test_every_record_is_one_output_or_reported_and_nothing_is_lost(data: st.DataObject) -> None:
    f = data.draw(faults)
    rt, kin, sqs, models, shadow_stream = data.draw(runtimes(f))
    event, expected = data.draw(events())
    systemic = models[0].kind in Model.SYSTEMIC
    try:
        ledger = deliver(event, expected, rt, kin, sqs, f, systemic)
    finally:
        if rt.shadow is not None:
            rt.shadow.close()
        _close_capture(rt)
    shadow_stream.json()  # shadow records are strict JSON too (StrictKinesis checked their keys and sizes)
    if ledger is not None:
        # A model fault always fails loudly: a broken model that was given rows cannot have let a batch pass.
        assert not (systemic and models[0].calls), "a broken model's batch was acknowledged"


@fuzz(60)
@given(events(max_records=8), st.sampled_from(Model.SYSTEMIC))
def test_a_broken_model_fails_every_batch_it_is_given_at_any_size(drawn: Any, kind: str) -> None:
    event, expected = drawn
    est = Model(kind)
    model = fake_model(est, SIG)
    kin, sqs = StrictKinesis(), StrictSqs()
    rt = StreamRuntime(lambda: model, KinesisSink(kin, "o", NO_SLEEP), SqsSink(sqs, "q", NO_SLEEP), None, "f", "id")
    try:
        process_batch(event, rt)
    except ModelBatchError:
        assert est.calls and not kin.records and not sqs.messages
        return
    assert not est.calls, "rows reached a broken model and the batch was acknowledged"
    ledger = Ledger(expected)
    assert ledger.round(event, {"batchItemFailures": []}, kin.json() + sqs.json()) is None
