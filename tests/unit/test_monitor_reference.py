"""The training reference: bins, types, strict deterministic JSON, the pinned digest."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_fn.monitoring.reference import (
    Bloom,
    Reference,
    ReferenceFormatError,
    feature_reference,
    string_hash,
)
from servingkit import taxi


def taxi_frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The demo model's columns and the durations (servingkit.taxi.model_frame)."""
    frame, y = taxi.model_frame(n, seed)
    return frame, y


def test_taxi_reference_has_the_documented_shape() -> None:
    frame, y = taxi_frame(20000, 1)
    ref = Reference.build(frame, y)
    assert [f.name for f in ref.features] == ["PU_DO", "trip_distance", "pickup_hour", "pickup_dow"]
    kinds = {f.name: f.kind for f in (*ref.features, ref.prediction)}
    assert kinds == {"PU_DO": "string", "trip_distance": "number", "pickup_hour": "number", "pickup_dow": "number",
                     "prediction": "number"}  # fmt: skip
    d = ref.by_name["trip_distance"]
    assert d.min == frame["trip_distance"].min() and d.max == frame["trip_distance"].max()
    assert len(d.edges) <= ref.bins + 1 and list(d.edges) == sorted(set(d.edges))
    assert d.counts[0] == 0 and d.counts[-1] == 0  # under/overflow are empty on the training data
    assert sum(d.counts) == 20000
    dow = ref.by_name["pickup_dow"]
    assert dow.edges[0] == 0 and dow.edges[-1] == 6 and len(dow.edges) <= 8  # integer quantiles deduplicated
    pudo = ref.by_name["PU_DO"]
    assert 0 < len(pudo.categories) <= ref.top_k and pudo.n_bins == len(pudo.categories) + 2
    assert min(pudo.counts[:-2]) >= ref.min_category_rows
    assert sum(pudo.counts) == 20000 and pudo.distinct > ref.top_k
    top = frame["PU_DO"].value_counts()
    assert pudo.counts[0] == top.iloc[0]


def test_json_is_strict_deterministic_and_pinned() -> None:
    frame, y = taxi_frame(3000, 2)
    a, b = Reference.build(frame, y), Reference.build(frame.copy(), y.copy())
    assert a.to_json() == b.to_json() and a.sha256 == b.sha256
    back = Reference.from_json(a.to_json(), expected_sha256=a.sha256)
    assert back == a and back.to_json() == a.to_json()
    with pytest.raises(ReferenceFormatError, match="pinned"):
        Reference.from_json(a.to_json(), expected_sha256="0" * 64)
    d = json.loads(a.to_json())
    assert d["format"] == 1
    d["features"][1]["edges"][0] = float("nan")
    with pytest.raises(ReferenceFormatError):
        Reference.from_json(json.dumps(d))
    d["format"] = 2
    with pytest.raises(ReferenceFormatError, match="format"):
        Reference.from_dict(d)
    frame2, _ = taxi_frame(3000, 3)
    assert Reference.build(frame2, y).sha256 != a.sha256


def test_bins_layout_with_under_and_overflow() -> None:
    f = feature_reference("x", np.array([1.0, 2.0, 3.0, 4.0, np.nan]), bins=4)
    assert f.edges == (1.0, 1.75, 2.5, 3.25, 4.0) and f.missing == 1
    b = f.bin(np.array([0.5, 1.0, 1.75, 3.9, 4.0, 4.0000001, np.inf, -np.inf, np.nan]))
    # bins: <1 | [1,1.75) | [1.75,2.5) | [2.5,3.25) | [3.25,4] | >4
    assert b.bins.tolist() == [2, 1, 1, 0, 2, 2] and b.missing == 1


def test_constant_empty_bool_and_mixed_columns() -> None:
    const = feature_reference("c", np.full(10, 7.0))
    assert const.edges == (7.0, 7.0) and const.bin(np.array([6.0, 7.0, 8.0])).bins.tolist() == [1, 1, 1]
    empty = feature_reference("e", np.array([np.nan, np.nan]))
    assert empty.edges == () and empty.n_bins == 1 and empty.missing == 2
    flag = feature_reference("b", np.array([True, False, True]))
    assert flag.kind == "bool" and flag.counts == (0, 1, 2, 0)
    mixed = feature_reference("m", np.array([1, 2.5, None, "x"], dtype=object), kind="number")
    assert mixed.missing == 1 and mixed.type_mismatch == 1 and sum(mixed.counts) == 2
    strings = feature_reference("s", np.array(["a", None, 3, float("nan"), "b"], dtype=object))
    assert strings.kind == "string" and strings.missing == 2 and strings.type_mismatch == 1


def test_top_k_ties_are_deterministic_and_rest_is_other() -> None:
    values = np.array(["b", "a", "c", "a", "b", "d"])
    f = feature_reference("s", values, top_k=2, min_category_rows=2)
    assert f.categories == ("a", "b")
    b = f.bin(np.array(["a", "c", "zzz", "<script>"]))
    assert f.counts == (2, 2, 0, 2)  # c and d, seen once each, are the leave-one-out "unseen" of the reference
    assert b.bins.tolist() == [1, 0, 1, 2] and b.unseen == 2  # c is known "other", zzz and <script> are unseen


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=30), min_size=1, max_size=300, unique=True))
def test_bloom_has_no_false_negatives(words: list[str]) -> None:
    arr = np.array(words, dtype=str)
    bloom = Bloom.of(arr)
    assert bloom.contains(arr).all()
    assert Bloom.from_dict(bloom.to_dict()) == bloom


@settings(max_examples=60, deadline=None)
@given(known=st.lists(st.text(max_size=12), min_size=1, max_size=200, unique=True),
       probes=st.lists(st.integers(0, 2**64 - 1), max_size=50))  # fmt: skip
def test_bloom_lookups_read_the_bits_its_probes_set(known: list[str], probes: list[int]) -> None:
    """`contains_hashes` (one wrapping add and one gather from a bit table per probe) answers what the stored bits
    at `_hash_probes` (h1 + i * h2 mod m, the positions `Bloom.of` sets) say, for any hash."""
    bloom = Bloom.of(np.array(known, dtype=str))
    hashes = np.concatenate([string_hash(np.array(known, dtype=str)), np.array(probes, dtype=np.uint64)])
    idx = Bloom._hash_probes(hashes, bloom.m, bloom.k)
    bits = np.frombuffer(bloom.bits, dtype=np.uint8)
    expected = ((bits[idx >> 3] >> (idx & 7).astype(np.uint8)) & 1).all(axis=1)
    assert bloom.contains_hashes(hashes).tolist() == expected.tolist()
    assert bloom.contains_hashes(hashes[: len(known)]).all()


def test_bloom_false_positive_rate_and_stable_hash() -> None:
    known = np.array([f"{i}_{j}" for i in range(100) for j in range(50)])
    bloom = Bloom.of(known)
    probe = np.array([f"new-{i}" for i in range(20000)])
    fpr = bloom.contains(probe).mean()
    assert fpr < 3e-3
    # The hash does not depend on numpy's string width, and is fixed across processes and versions.
    assert string_hash(np.array(["ab"], dtype="U2"))[0] == string_hash(np.array(["ab"], dtype="U40"))[0]
    assert int(string_hash(np.array(["132_48"]))[0]) == int(string_hash(np.array(["132_48", "x" * 9]))[0])


@settings(max_examples=80, deadline=None)
@given(train=st.lists(st.floats(-50, 50, allow_nan=False), min_size=2, max_size=200),
       lo=st.integers(-(2**62), 2**62), span=st.integers(0, 5000), n=st.integers(60, 400),
       dtype=st.sampled_from(["int64", "int32", "int8", "uint16"]), seed=st.integers(0, 2**16))  # fmt: skip
def test_an_integer_column_bins_as_its_floats_do(train: list[float], lo: int, span: int, n: int, dtype: str,
                                                   seed: int) -> None:  # fmt: skip
    """A small-range integer column (counted per distinct value) gets the bins its values get as floats; a wide one
    goes the per-row way; both below, inside and above the training range."""
    info = np.iinfo(dtype)
    lo = max(int(info.min), min(lo % 200 - 100 if dtype != "int64" else lo, int(info.max) - span))
    hi = min(int(info.max), lo + span)
    values = np.random.default_rng(seed).integers(lo, hi, n, endpoint=True).astype(dtype)
    f = feature_reference("x", np.array(train))
    as_ints, as_floats = f.bin(values), f.bin(values.astype(np.float64))
    assert as_ints.bins.tolist() == as_floats.bins.tolist()
    assert (as_ints.missing, as_ints.type_mismatch) == (as_floats.missing, as_floats.type_mismatch) == (0, 0)
