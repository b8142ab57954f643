"""The column-at-a-time paths of a stream batch write what the record-by-record paths write (issue 16).

- `records.map_payloads` reads payloads with orjson where it reads what the strict scanner reads; with the
  scanner forced, every record's features, id, reason and detail are the same;
- `outputs.prediction_entries` builds the prediction records of a common batch in C-level passes; with it
  turned off (every record through `prediction_entry`), every output and dead letter has the same bytes;
- `outputs.float_texts` is `repr` of each float;
- `hooks.taxi_features` reads plain pickup times as one array; each ride yields what `fromisoformat` gives,
  or the FeatureError naming its fields, whatever rides are beside it.

Batches mix plain records (ASCII string ids, floats: the common case) with the hostile ones of
`tests.strategies`, so both paths and the switch between them are exercised.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lambda_fn import outputs, records, stream
from lambda_fn.hooks import FeatureError, taxi_features
from lambda_fn.outputs import float_texts
from lambda_fn.records import decode_event, map_payloads, strict_loads
from lambda_fn.scoring import ModelBatchError
from lambda_fn.sinks import MemorySink
from lambda_fn.stream import StreamRuntime, process_batch
from servingkit.events import kinesis_record
from tests.fuzzing import fuzz
from tests.helpers import fake_model
from tests.strategies import SIG, Model, ids
from tests.strategies import records as hostile_records

pytestmark = pytest.mark.fuzz


@contextmanager
def record_by_record() -> Any:
    """The reference: JSON by the strict scanner, prediction records one by one (as before issue 16)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(records, "_fast_loads", lambda datas: strict_loads)
        mp.setattr(stream, "prediction_entries", lambda *args: None)
        yield


plain_ids = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=30)
plain = st.builds(
    lambda rid, x, z: json.dumps({"id": rid, "f": {"x": x, "z": z}}).encode(),
    plain_ids,
    st.floats(-1e20, 1e20) | st.integers(-(10**20), 10**20),
    st.text(max_size=5),
)
odd = st.builds(lambda rid: json.dumps({"id": rid, "f": {"x": 1.5}}).encode(), ids)
partition_keys = st.text(min_size=1, max_size=10) | plain_ids | st.just("p" * 300)


@st.composite
def batches(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly plain records, sometimes hostile or odd ones among them (each kind of batch both paths take)."""
    mixed = draw(st.sampled_from(["plain", "plain", "odd", "hostile"]))
    kinds = {"plain": plain, "odd": plain | odd, "hostile": plain | hostile_records.map(lambda g: g.data)}
    datas = draw(st.lists(kinds[mixed], min_size=1, max_size=25))
    shards = draw(st.sampled_from([["shardId-000000000000"], ["shardId-000000000000", "shardId-000000000001"]]))
    out = []
    for i, data in enumerate(datas):
        key = draw(partition_keys)
        out.append(kinesis_record(data, 49_000_000_000 + 10 * i, key, shards[i % len(shards)]))
    return {"Records": out}


def _run(event: dict[str, Any], model: Any, id_field: str | None) -> tuple[list[Any], list[Any], Any]:
    rt = StreamRuntime(lambda: model, MemorySink(), MemorySink(), None, "f", id_field)
    try:
        response: Any = process_batch(event, rt)
    except ModelBatchError as exc:  # every row failed the model before it scored any: both paths must say so
        response = str(exc)
    dead = []
    for e in rt.dlq.entries:  # type: ignore[attr-defined]
        body = json.loads(e.data)
        body.pop("failed_at")  # the time it was written: the one field that may differ
        dead.append((e.ref, e.key, body))
    return list(rt.output.entries), dead, response  # type: ignore[attr-defined]


@fuzz(100)
@given(batches(), st.sampled_from(["id", "id", None]))
def test_a_batch_writes_the_same_bytes_column_by_column_as_record_by_record(
    event: dict[str, Any], id_field: Any
) -> None:
    model = fake_model(Model("rows"), SIG)
    fast = _run(event, model, id_field)
    with record_by_record():
        slow = _run(event, model, id_field)
    assert fast == slow


def test_the_common_batch_takes_the_column_path() -> None:
    """The demo's traffic (string ids, float predictions) is encoded by `prediction_entries`, not one by one."""
    event = {
        "Records": [
            kinesis_record(json.dumps({"id": f"r-{i}", "f": {"x": i / 3}}).encode(), 49_000 + i, f"r-{i}")
            for i in range(50)
        ]
    }
    recs = decode_event(event)
    map_payloads(recs, "f", "id")
    entries = outputs.prediction_entries(list(range(50)), recs, [i / 7 for i in range(50)], '{"name":"m"}', None)
    assert entries is not None and len(entries) == 50
    for i, (entry, rec) in enumerate(zip(entries, recs, strict=True)):
        assert entry == outputs.prediction_entry(i, rec, i / 7, '{"name":"m"}', f"r-{i}")


def test_one_odd_record_sends_the_batch_record_by_record() -> None:
    recs = decode_event({"Records": [kinesis_record(json.dumps({"id": "é", "f": {}}).encode(), 1, "k")]})
    map_payloads(recs, "f", "id")
    assert outputs.prediction_entries([0], recs, [1.0], "null", None) is None  # a non-ASCII id
    recs[0].record_id = "a"
    assert outputs.prediction_entries([0], recs, [float("nan")], "null", None) is None
    assert outputs.prediction_entries([0], recs, [1], "null", None) is None  # an int prediction
    assert outputs.prediction_entries([0], recs, [1.0], "null", ["x" * 257]) is None  # a routing key too long


@fuzz(300)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=30))
def test_float_texts_are_repr(values: list[float]) -> None:
    assert float_texts(values) == [repr(v) for v in values]


@fuzz(200)
@given(st.lists(st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=5), max_size=8))
def test_payloads_decode_as_the_strict_scanner_decodes_them(values: list[Any]) -> None:
    """Integers beyond 64 bits (orjson would read floats), huge floats, any text: features and ids alike."""
    datas = [json.dumps({"id": v, "f": {"x": v, "all": values}}).encode() for v in values] or [b"{}"]
    event = {"Records": [kinesis_record(d, i, "k") for i, d in enumerate(datas)]}
    fast = decode_event(event)
    map_payloads(fast, "f", "id")
    with record_by_record():
        slow = decode_event(event)
        map_payloads(slow, "f", "id")
    for a, b in zip(fast, slow, strict=True):
        assert (repr(a.features), repr(a.record_id), a.reason, a.detail) == (
            repr(b.features), repr(b.record_id), b.reason, b.detail
        )  # fmt: skip


# --------------------------------------------------------------------------- the demo hook

iso_like = st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}\Z")
pickups = st.one_of(
    iso_like,
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S")),
    st.text(max_size=19).filter(lambda t: len(t) == 19) | st.text(min_size=19, max_size=19),
    st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
    st.integers(),
    st.none(),
)
rides = st.fixed_dictionaries(
    {
        "PULocationID": st.integers(1, 300) | st.just("7"),
        "DOLocationID": st.integers(1, 300),
        "trip_distance": st.floats(allow_nan=False),
    },
    optional={"pickup_datetime": pickups},
)


def _expected(ride: dict[str, Any]) -> dict[str, Any] | None:
    """What the hook must make of a ride, read with `datetime.fromisoformat` (None: it must refuse it)."""
    try:
        when = datetime.fromisoformat(str(ride["pickup_datetime"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return None
    pu, do = int(ride["PULocationID"]), int(ride["DOLocationID"])
    return {"PU_DO": f"{pu}_{do}", "trip_distance": ride["trip_distance"], "pickup_hour": when.hour,
            "pickup_dow": when.weekday()}  # fmt: skip


@fuzz(300)
@given(st.lists(rides, min_size=1, max_size=20))
def test_the_taxi_hook_reads_each_pickup_as_fromisoformat_does_whatever_is_beside_it(batch: list[Any]) -> None:
    expected = [_expected(r) for r in batch]
    for ride, want in zip(batch, expected, strict=True):
        if want is None:
            with pytest.raises(FeatureError) as err:
                taxi_features([ride])
            assert "pickup_datetime" in err.value.problems
        else:
            assert taxi_features([ride]) == [want]
    if all(w is not None for w in expected):
        assert taxi_features(batch) == expected
    else:
        with pytest.raises(FeatureError):
            taxi_features(batch)


def test_the_taxi_hook_reads_every_day_of_the_calendar_as_fromisoformat_does() -> None:
    """Every day of 1890-2110 and of the edge years, at every hour, in one batch (the column path), and the
    times the calendar refuses (each alone, and beside good ones: the batch then fails, as before)."""
    from datetime import date, timedelta

    days = [date(1890, 1, 1) + timedelta(d) for d in range((date(2110, 12, 31) - date(1890, 1, 1)).days + 1)]
    days += [date(y, m, d) for y in (1, 4, 100, 400, 1600, 9999) for m, d in ((1, 1), (2, 28), (3, 1), (12, 31))]
    batch = [
        {"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1.0,
         "pickup_datetime": f"{day.isoformat()}{'T ' [n % 2]}{n % 24:02d}:{n % 60:02d}:{(7 * n) % 60:02d}"}
        for n, day in enumerate(days)
    ]  # fmt: skip
    assert taxi_features(batch) == [_expected(r) for r in batch]
    refused = ["2023-02-29T00:00:00", "1900-02-29T00:00:00", "2024-04-31T00:00:00", "2024-00-10T00:00:00",
               "2024-13-10T00:00:00", "2024-01-00T00:00:00", "0000-01-01T00:00:00", "2024-01-01T24:00:00",
               "2024-01-01T00:60:00", "2024-01-01T00:00:60", "2024-1-01T00:00:00", "2024-01-01T00:00:0x"]  # fmt: skip
    for text in refused:
        ride = dict(batch[0], pickup_datetime=text)
        assert _expected(ride) is None, text
        with pytest.raises(FeatureError) as err:
            taxi_features([batch[0], ride])
        assert err.value.problems == {"pickup_datetime": "must be an ISO 8601 date-time string"}
    for text in ("2024-01-01x00:00:00", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00+05:30", "20240101T000000"):
        ride = dict(batch[0], pickup_datetime=text)  # not the plain form: read by fromisoformat, as it reads it
        assert taxi_features([ride]) == [_expected(ride)] != [None]
    assert taxi_features([dict(batch[0], pickup_datetime="2024-02-29T23:59:59")])[0]["pickup_dow"] == 3
