"""process_batch with in-memory sinks: the no-loss invariant over random mixes of good and poison records."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_fn.schema import Signature
from lambda_fn.sinks import Entry, MemorySink, PutOutcome
from lambda_fn.stream import StreamRuntime, process_batch
from tests.helpers import fake_model, kinesis_event

SIG = Signature.from_columns([{"name": "x", "type": "double"}])


class Doubler:
    def predict(self, x: Any) -> Any:
        if (x[:, 0] == 666).any():
            raise ValueError("the devil's row")
        return x[:, 0] * 2


MODEL = fake_model(Doubler(), SIG, name="d")

GOOD = st.builds(lambda v: {"id": "g", "f": {"x": v}}, st.floats(-1e6, 1e6).filter(lambda v: v != 666))
POISON = st.sampled_from(
    [b"nope", "@@@", {"id": "p", "f": {"x": "a"}}, {"id": "p"}, {"id": "p", "f": {"x": 666}}, {"id": "p", "f": [1]}]
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(GOOD, POISON), min_size=1, max_size=120))
def test_every_record_is_exactly_one_output_or_one_dead_letter(items: list[Any]) -> None:
    out, dlq = MemorySink(), MemorySink()
    rt = StreamRuntime(model=lambda: MODEL, output=out, dlq=dlq, features_field="f", id_field="id")
    event = kinesis_event(items, start_seq=10)
    # The model scores a row built from its signature ({"x": 0}), so even a batch whose every row breaks
    # it is poison, never a model fault: it never raises.
    response = process_batch(event, rt)
    assert response == {"batchItemFailures": []}
    seqs = [o["source"]["sequence_number"] for o in out.json()] + [d["sequence_number"] for d in dlq.json()]
    assert sorted(seqs, key=int) == [str(10 + i) for i in range(len(items))]
    assert all(o["id"] == "g" for o in out.json())
    assert all(d["id"] in ("p", None) for d in dlq.json())


class FailingSink:
    """Accepts entries except those whose ref is in `refuse` (as if retries ran out)."""

    def __init__(self, refuse: set[int]) -> None:
        self.refuse = refuse
        self.entries: list[Entry] = []

    def put(self, entries: Sequence[Entry]) -> PutOutcome:
        self.entries.extend(e for e in entries if e.ref not in self.refuse)
        return PutOutcome(failed=[e.ref for e in entries if e.ref in self.refuse])


def test_undeliverable_dead_letters_are_reported_for_retry_not_dropped() -> None:
    items = [{"id": "a", "f": {"x": 1.0}}, b"poison", {"id": "b", "f": {"x": 2.0}}]
    dlq = FailingSink(refuse={1})
    rt = StreamRuntime(model=lambda: MODEL, output=MemorySink(), dlq=dlq, features_field="f", id_field="id")
    response = process_batch(kinesis_event(items, start_seq=50), rt)
    assert response == {"batchItemFailures": [{"itemIdentifier": "51"}]}


def test_output_partition_key_is_the_id_or_the_input_key() -> None:
    out = MemorySink()
    rt = StreamRuntime(model=lambda: MODEL, output=out, dlq=MemorySink(), features_field="f", id_field="id")
    process_batch(kinesis_event([{"id": "ride-1", "f": {"x": 1.0}}, {"f": {"x": 2.0}}], start_seq=1), rt)
    assert [e.key for e in out.entries] == ["ride-1", "k1"]
    assert json.loads(out.entries[1].data)["id"] is None
