"""Deterministic capture sampling: a keyed hash of the record id against the rate.

`point(id)` maps the id to [0, 1) with keyed BLAKE2b (64 bits of digest / 2**64); a record is captured when its
point is below the rate. The point depends only on the id and the key, never on the variant, the model or the
time, so primary, shadow and the labels job pick the same records; raising the rate only adds records (an id
captured at rate r is captured at every r' > r). `hash_id` is a separate keyed hash (another BLAKE2b
personalisation) that can replace ids in captured records for privacy; the sampling key need not be secret,
the id-hashing key must be (it comes from a secret, never from code).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_KEY = b"servingkit-capture-sampling-v1"
_SAMPLE_PERSON = b"sk-sample"
_ID_PERSON = b"sk-id"
_SCALE = float(2**64)


def _key(key: bytes) -> bytes:
    if not key or len(key) > 64:
        raise ValueError("a sampling or id-hashing key is 1 to 64 bytes")
    return key


def point(record_id: str, key: bytes = DEFAULT_KEY) -> float:
    """The id's position in [0, 1): the same for every variant, process and rate."""
    data = record_id.encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(data, digest_size=8, key=_key(key), person=_SAMPLE_PERSON).digest()
    return int.from_bytes(digest, "big") / _SCALE


def points(record_ids: Iterable[str], key: bytes = DEFAULT_KEY) -> np.ndarray:
    """`point` of each id as one float64 array (the same values; one keyed hasher copied per id)."""
    base = hashlib.blake2b(digest_size=8, key=_key(key), person=_SAMPLE_PERSON)

    def digest(record_id: str) -> bytes:
        h = base.copy()
        h.update(record_id.encode("utf-8", "surrogatepass"))
        return h.digest()

    raw = b"".join(map(digest, record_ids))
    return np.frombuffer(raw, dtype=">u8").astype(np.float64) / _SCALE


def sampled(record_id: str, rate: float, key: bytes = DEFAULT_KEY) -> bool:
    """Whether the record with this id is captured at `rate` (0 = none, 1 = all)."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError("a capture rate is between 0 and 1")
    return rate >= 1.0 or (rate > 0.0 and point(record_id, key) < rate)


def hash_id(record_id: str, key: bytes) -> str:
    """A keyed, irreversible stand-in for an id (hex of 16 bytes): equal ids give equal hashes under one key."""
    data = record_id.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16, key=_key(key), person=_ID_PERSON).hexdigest()


@dataclass(frozen=True)
class Sampler:
    """The capture settings of one function: rate, sampling key, and the optional id-hashing key."""

    rate: float
    key: bytes = DEFAULT_KEY
    id_key: bytes | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("a capture rate is between 0 and 1")
        _key(self.key)
        if self.id_key is not None:
            _key(self.id_key)

    def __call__(self, record_id: str) -> bool:
        return sampled(record_id, self.rate, self.key)

    def pick(self, record_ids: Sequence[str]) -> np.ndarray:
        """Positions of the ids captured at this rate (vectorized `__call__`), in order."""
        if self.rate <= 0.0 or not record_ids:
            return np.zeros(0, dtype=np.intp)
        if self.rate >= 1.0:
            return np.arange(len(record_ids))
        return np.flatnonzero(points(record_ids, self.key) < self.rate)

    def written_id(self, record_id: str) -> str:
        """The id as captured: hashed when an id key is set, else as is."""
        return hash_id(record_id, self.id_key) if self.id_key is not None else record_id
