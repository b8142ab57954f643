"""Deterministic capture sampling: the rate holds, stable per id, monotonic in the rate, variant-blind."""

from __future__ import annotations

import hashlib
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_fn.monitoring.sampling import DEFAULT_KEY, Sampler, hash_id, point, points, sampled

IDS = [f"ride-{i:07d}" for i in range(100_000)]


@pytest.mark.parametrize("rate", [0.001, 0.01, 0.1, 0.5, 0.9])
def test_rate_holds_within_binomial_tolerance(rate: float) -> None:
    n = len(IDS)
    hits = sum(sampled(i, rate) for i in IDS)
    sd = math.sqrt(n * rate * (1 - rate))
    assert abs(hits - n * rate) < 5 * sd, (hits, n * rate)  # 5 sigma: fails by chance about once in 3.5 million


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80), st.floats(0, 1), st.floats(0, 1))
def test_stable_and_monotonic_in_rate(record_id: str, r1: float, r2: float) -> None:
    lo, hi = sorted((r1, r2))
    assert sampled(record_id, lo) == sampled(record_id, lo)
    assert point(record_id) == point(record_id)
    if sampled(record_id, lo):
        assert sampled(record_id, hi)
    assert not sampled(record_id, 0.0) and sampled(record_id, 1.0)


def test_the_same_records_for_every_variant_and_a_key_changes_them() -> None:
    primary, shadow = Sampler(0.05), Sampler(0.05)
    picked = [i for i in IDS[:20000] if primary(i)]
    assert picked == [i for i in IDS[:20000] if shadow(i)]
    other = [i for i in IDS[:20000] if Sampler(0.05, key=b"another key")(i)]
    assert len(set(picked) & set(other)) < len(picked) * 0.2


def test_keyed_id_hashing_for_privacy() -> None:
    s = Sampler(1.0, id_key=b"secret-1")
    assert s.written_id("ride-1") == s.written_id("ride-1") == hash_id("ride-1", b"secret-1")
    assert s.written_id("ride-1") != s.written_id("ride-2")
    assert s.written_id("ride-1") != hash_id("ride-1", b"secret-2") and "ride" not in s.written_id("ride-1")
    assert Sampler(1.0).written_id("ride-1") == "ride-1"
    assert sampled("\ud800 lone surrogate", 1.0)  # any str, hashed without error
    with pytest.raises(ValueError):
        Sampler(1.5)
    with pytest.raises(ValueError):
        Sampler(0.5, key=b"")


_M64 = 2**64 - 1


def _fmix(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _M64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _M64
    return h ^ (h >> 33)


def _documented_point(record_id: str, key: bytes = DEFAULT_KEY) -> float:
    """The point as docs/monitoring.md defines it, one id at a time in plain Python: FNV-1a over the code points
    (numpy's strings drop trailing NULs) from a keyed BLAKE2b seed, the length, the finalizer, the second seed."""
    digest = hashlib.blake2b(digest_size=16, key=key, person=b"sk-sample").digest()
    seed, seed2 = int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:], "big")
    text = record_id.rstrip("\0")
    h = seed
    for ch in text:
        h = ((h ^ ord(ch)) * 0x100000001B3) & _M64
    h = _fmix(_fmix(h ^ len(text)) ^ seed2)
    return (h >> 11) / 2**53


ids_batch = st.lists(st.one_of(st.text(max_size=30), st.from_regex(r"ride-[0-9]{6}", fullmatch=True)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(ids=ids_batch, key=st.binary(min_size=1, max_size=64))
def test_a_batch_gets_the_documented_points_whatever_its_ids(ids: list[str], key: bytes) -> None:
    """The vectorized points (one join and one UTF-32 encode of the batch; through a numpy array when an id holds a
    NUL) are the documented per-id hash: equal lengths or ragged, empty ids, NULs, surrogates, astral planes."""
    assert points(ids, key).tolist() == [_documented_point(i, key) for i in ids]
    assert points(tuple(ids), key).tolist() == points(iter(ids), key).tolist()


def test_points_of_the_demo_ids_are_the_documented_ones() -> None:
    ids = [f"ride-{i:07d}" for i in range(2000)] + ["a", "a\0", "\0a", "\ud800", "\U0001f600", ""]
    assert points(ids).tolist() == [_documented_point(i) for i in ids]
    uniform = ids[:2000]  # one length: the 2-D path
    assert points(uniform).tolist() == [_documented_point(i) for i in uniform]


@settings(max_examples=150, deadline=None)
@given(length=st.integers(0, 12), data=st.data())
def test_ids_of_one_length_get_the_documented_points(length: int, data: st.DataObject) -> None:
    """A batch of ids of one length is hashed through a 2-D view (`columns.fnv1a`): the documented points still,
    NULs and astral characters included (those go through a numpy array, laid out at its own stride)."""
    ids = data.draw(st.lists(st.text(min_size=length, max_size=length), min_size=2, max_size=30))
    assert points(ids).tolist() == [_documented_point(i) for i in ids]
