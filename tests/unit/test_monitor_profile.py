"""Mergeable profiles: counts per batch, associative and commutative merge, strict JSON, cheap to add."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_fn.monitoring.profile import Profile, ProfileError, merge_all
from lambda_fn.monitoring.reference import Reference

TRAIN = pd.DataFrame(
    {
        "zone": ["a", "b", "c", "a", "b", "a", "d", None] * 25,
        "distance": np.linspace(0.5, 20.0, 200),
        "hour": np.arange(200) % 24,
        "flag": np.arange(200) % 3 == 0,
    }
)
REF = Reference.build(TRAIN, np.linspace(1.0, 60.0, 200), top_k=3)

values = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 30),
                   st.sampled_from(["a", "b", "c", "d", "new", "<b>"]), st.booleans())  # fmt: skip


@st.composite
def batches(draw: st.DrawFn) -> tuple[dict[str, list[object]], list[float]]:
    n = draw(st.integers(0, 12))
    cols: dict[str, list[object]] = {}
    for name in ("zone", "distance", "hour", "flag", "extra"):
        if draw(st.booleans()) or name in ("distance",):
            cols[name] = [draw(values) for _ in range(n)]
    preds = [draw(st.floats(-10, 100)) for _ in range(n)]
    return cols, preds


def _profile(batch: tuple[dict[str, list[object]], list[float]]) -> Profile:
    p = Profile.new(REF)
    cols, preds = batch
    p.add_batch({k: np.array(v, dtype=object) for k, v in cols.items()}, preds)
    return p


@settings(max_examples=80, deadline=None)
@given(st.lists(batches(), min_size=3, max_size=3))
def test_merge_is_associative_and_commutative(bs: list[tuple[dict[str, list[object]], list[float]]]) -> None:
    a, b, c = (_profile(x) for x in bs)
    left = a.merge(b).merge(c).to_dict()
    assert left == a.merge(b.merge(c)).to_dict()
    assert a.merge(b).to_dict() == b.merge(a).to_dict()
    assert merge_all([c, a, b]).to_dict() == left
    # Merging does not change its operands, and one profile fed every batch is the merge.
    assert a.to_dict() == _profile(bs[0]).to_dict()
    one = Profile.new(REF)
    for cols, preds in bs:
        one.add_batch({k: np.array(v, dtype=object) for k, v in cols.items()}, preds)
    assert one.to_dict() == left


@settings(max_examples=40, deadline=None)
@given(batches())
def test_counts_add_up_and_json_round_trips(batch: tuple[dict[str, list[object]], list[float]]) -> None:
    p = _profile(batch)
    n = len(batch[1])
    for f in REF.features:
        c = p.features[f.name]
        assert c.present + c.missing + c.type_mismatch == n
    back = Profile.from_json(p.to_json(), REF)
    assert back.to_dict() == p.to_dict()
    assert b"NaN" not in p.to_json() and b"Infinity" not in p.to_json()


def test_columns_types_ranges_and_unseen_are_counted() -> None:
    p = Profile.new(REF, variant="shadow")
    p.add_batch(
        pd.DataFrame(
            {
                "zone": ["a", "zzz", None, "d"],
                "distance": [0.1, 5.0, 99.0, np.nan],
                "hour": [1, 2, 3, 4],
                "surprise": [1, 2, 3, 4],
            }
        ),
        [10.0, 20.0, 1000.0, -1.0],
    )
    zone, dist = p.features["zone"], p.features["distance"]
    assert zone.missing == 1 and zone.unseen == 1 and zone.bins.sum() == 3  # "d" is known, outside the top 3
    assert dist.below == 1 and dist.above == 1 and dist.missing == 1
    assert p.missing_columns == {"flag": 4} and p.features["flag"].missing == 4
    assert p.extra_columns == {"surprise": 4}
    assert p.prediction.below == 1 and p.prediction.above == 1
    p.add_batch({"zone": np.array([1, 2], dtype=object), "distance": np.array(["x", 3.0], dtype=object),
                 "hour": [5, 6], "flag": np.array([True, 1], dtype=object)}, [1.0, 2.0])  # fmt: skip
    assert p.features["zone"].type_mismatch == 2 and p.features["distance"].type_mismatch == 1
    assert p.features["flag"].type_mismatch == 1
    assert p.rows == 6 and p.batches == 2


def test_profiles_of_other_references_or_variants_do_not_merge() -> None:
    other = Reference.build(TRAIN.iloc[:100], np.arange(100.0))
    with pytest.raises(ProfileError):
        Profile.new(REF).merge(Profile.new(other))
    with pytest.raises(ProfileError):
        Profile.new(REF, "primary").merge(Profile.new(REF, "shadow"))
    with pytest.raises(ProfileError, match="another reference"):
        Profile.from_json(Profile.new(REF).to_json(), other)
    with pytest.raises(ProfileError, match="no reference"):
        Profile.from_json(Profile.new(REF).to_json()).add_batch({}, [])


def test_adding_a_500_row_demo_batch_is_cheap() -> None:
    from tests.unit.test_monitor_reference import taxi_frame

    train, y = taxi_frame(20000, 1)
    ref = Reference.build(train, y)
    batch, preds = taxi_frame(500, 2)
    p = Profile.new(ref)
    times = []
    for _ in range(50):
        t = time.perf_counter()
        p.add_batch(batch, preds)
        times.append(time.perf_counter() - t)
    median = sorted(times)[len(times) // 2]
    print(f"profile add, 500-row DataFrame batch: min {min(times) * 1e6:.0f} µs, median {median * 1e6:.0f} µs")
    assert median < 0.02  # generous: a loaded CI machine; measured figures are in the report


@settings(max_examples=60, deadline=None)
@given(zones=st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d", "new", "<b>", "x" * 250, "x" * 260])),
                      max_size=30))  # fmt: skip
def test_a_pandas_string_column_bins_as_its_values_do(zones: list[str | None]) -> None:
    """The factorized path (one match per distinct value of a pandas string column) counts what the per-row
    path counts on the same values: bins, missing, unseen, long values cut alike."""
    n = len(zones)
    preds = [float(i) for i in range(n)]
    coded = Profile.new(REF)
    coded.add_batch(pd.DataFrame({"zone": pd.array(zones, dtype="str"), "distance": [1.0] * n}), preds)
    rows = Profile.new(REF)
    rows.add_batch({"zone": np.array(zones, dtype=object), "distance": [1.0] * n}, preds)
    assert coded.to_dict() == rows.to_dict()
    assert coded.features["zone"].missing == sum(z is None for z in zones)


# Training rows per category: the top 6 hold an empty, an astral and a long (cut at 200) one.
_COUNTS = {"route_1": 90, "": 80, "\U0001f600": 70, "x" * 205: 60, "é": 50, "a": 45, "b": 40, "a\0": 35, "x" * 199: 35}
_TEXTS = list(_COUNTS)
TEXT_REF = Reference.build({"zone": np.array([t for t, n in _COUNTS.items() for _ in range(n)] + ["rare", "once"],
                                             dtype=object)}, np.zeros(sum(_COUNTS.values()) + 2), top_k=6)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(zones=st.lists(st.one_of(st.none(), st.sampled_from([*_TEXTS, "rare", "once", "x" * 260]), st.text(max_size=8)),
                      max_size=40))  # fmt: skip
def test_distinct_strings_bin_by_their_code_points_as_by_a_numpy_array(zones: list[str | None]) -> None:
    """A pandas string column's distinct values are matched to the top K by hash (then compared) and looked up
    in the Bloom filter from their code points, without a numpy 'U' array: the same bins, unseen and missing as
    the per-row path, for empty, long (cut at 200), astral, NUL-holding and never-seen strings."""
    preds = [1.0] * len(zones)
    coded = Profile.new(TEXT_REF)
    coded.add_batch(pd.DataFrame({"zone": pd.array(zones, dtype="str")}), preds)
    rows = Profile.new(TEXT_REF)
    rows.add_batch({"zone": np.array(zones, dtype=object)}, preds)
    assert coded.to_dict() == rows.to_dict()


def test_the_text_reference_matches_its_top_k_by_hash() -> None:
    # numpy's strings drop trailing NULs, so training's "a\0" rows count as "a" (45 + 35).
    assert TEXT_REF.features[0].categories == ("route_1", "", "a", "\U0001f600", "x" * 200, "é")
    for batch, bins in (
        (["route_1", "", "x" * 203, "a", "b", "never"], [1, 1, 1, 0, 1, 0, 1, 1]),  # by hash
        (["a\0", "b"], [0, 0, 1, 0, 0, 0, 1, 0]),  # a NUL: through a 'U' array, where "a\0" is "a"
    ):
        coded = Profile.new(TEXT_REF)
        coded.add_batch(pd.DataFrame({"zone": pd.array(batch, dtype="str")}), [1.0] * len(batch))
        assert coded.features["zone"].bins.tolist() == bins


def test_ascii_values_kept_by_arrow_are_binned_from_their_bytes() -> None:
    """Arrow-backed ASCII values are hashed from their UTF-8 bytes (`Distinct.ascii_points`, no `str` apiece): the
    same bins as the per-row path; a non-ASCII or NUL-holding value sends the column the `str` way."""
    from lambda_fn.monitoring.columns import string_codes

    zones = ["route_1", "", "a", "b", "x" * 205, "x" * 199, "rare", "never", None, "a", "route_1"]
    coded = string_codes(pd.Series(pd.array(zones, dtype="str")))
    assert coded is not None and coded[1].ascii_points() is not None
    assert coded[1].take(np.array([2, 0])) == ["a", "route_1"]
    for batch in (zones, [*zones, "é"], [*zones, "a\0"]):
        by_bytes = Profile.new(TEXT_REF)
        by_bytes.add_batch(pd.DataFrame({"zone": pd.array(batch, dtype="str")}), [1.0] * len(batch))
        rows = Profile.new(TEXT_REF)
        rows.add_batch({"zone": np.array(batch, dtype=object)}, [1.0] * len(batch))
        assert by_bytes.to_dict() == rows.to_dict()
    for other in ("é", "a\0"):
        again = string_codes(pd.Series(pd.array([*zones, other], dtype="str")))
        assert again is not None and again[1].ascii_points() is None
