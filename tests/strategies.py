"""Hypothesis strategies of a hostile stream: any bytes, JSON of any depth, size and type, KPL aggregates
(valid, corrupt, empty), ids of any type, models that misbehave, and the invariant checker they share.

A generated record knows how many user records it holds (`Generated.users`): that is what the checker
expects to come out, computed apart from the code under test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st

from lambda_fn.records import KPL_MAGIC, Reason, aggregated_record_class
from lambda_fn.schema import Signature
from lambda_fn.wire import ID_MAX_BYTES
from tests.helpers import kinesis_record

SIG = Signature.from_columns([{"name": "x", "type": "double"}, {"name": "z", "type": "string", "required": False}])
REASONS = {v for k, v in vars(Reason).items() if k.isupper()}
# Feature values a misbehaving model reacts to (0.0, the value of a row built from SIG, is always fine).
RAISE_X, NAN_X, INF_X, WRONG_LEN_X, HUGE_X, DEEP_X = 666.0, 777.0, 888.0, 555.0, 999.0, 444.0
SPECIAL_X = [RAISE_X, NAN_X, INF_X, WRONG_LEN_X, HUGE_X, DEEP_X]


class Model:
    """predict() that misbehaves on the special rows; a systemic kind misbehaves on every row."""

    SYSTEMIC = ("raises", "nan", "wrong_len")

    def __init__(self, kind: str = "rows") -> None:
        self.kind = kind
        self.calls = 0

    def predict(self, frame: Any) -> Any:
        self.calls += 1
        x = np.asarray(frame["x"], dtype=float)
        n = len(x)
        if self.kind == "raises":
            raise RuntimeError("the model's native library is gone")
        if self.kind == "nan":
            return [float("nan")] * n
        if self.kind == "wrong_len" or (x == WRONG_LEN_X).any():
            return [0.0] * (n + 1)
        if (x == RAISE_X).any():
            raise ValueError(f"cannot score {RAISE_X}")
        out: list[Any] = (2 * x).tolist()
        for i, v in enumerate(x.tolist()):
            if v == NAN_X:
                out[i] = float("nan")
            elif v == INF_X:
                out[i] = {"p": float("inf")}
            elif v == HUGE_X:
                out[i] = "h" * (1024 * 1024 + 10)  # over Kinesis' record limit: output_too_large
            elif v == DEEP_X:
                deep: Any = []
                for _ in range(50_000):  # deeper than any encoder recurses
                    deep = [deep]
                out[i] = deep
        return out


def hook(rows: list[Any]) -> list[Any]:
    """A feature hook that refuses feature objects carrying "boom" and passes the others through."""
    for r in rows:
        if type(r) is dict and r.get("boom"):
            raise RuntimeError("boom")
    return rows


# --------------------------------------------------------------------------- values

surrogates = st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3)
texts = st.one_of(st.text(max_size=20), surrogates, st.text(st.characters(min_codepoint=0x10000), max_size=5))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
json_values = st.recursive(
    scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(texts, kids, max_size=4), max_leaves=12
)
huge_texts = st.one_of(
    st.builds(lambda n: "i" * n, st.integers(200_000, 900_000)),
    st.builds(lambda n: "\U0001f600" * n, st.integers(1_000, 70_000)),  # 12 bytes each once escaped
)
ids = st.one_of(st.text(max_size=40), surrogates, st.integers(), st.floats(), st.none(), json_values, huge_texts)
x_values = st.one_of(
    st.floats(-1e6, 1e6), st.sampled_from([*SPECIAL_X, 0.0]), st.sampled_from([*SPECIAL_X, 1.0]), st.integers()
)
features = st.one_of(
    st.fixed_dictionaries({"x": x_values}, optional={"z": st.one_of(texts, json_values), "boom": st.just(True)}),
    json_values,
)
objects = st.builds(
    lambda extra, rid, f: {**extra, "id": rid, "f": f},
    st.dictionaries(st.text(max_size=4), json_values, max_size=2),
    ids,
    features,
)


def _dumps(value: Any, ascii_only: bool) -> bytes:
    """Producer-side JSON: Python's, so NaN literals and lone surrogates (raw, not UTF-8) do reach the scorer."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def _deep(depth: int, inside: bool) -> bytes:
    nested = b"[" * depth + b"]" * depth
    return b'{"id":"deep","f":' + nested + b"}" if inside else nested


# --------------------------------------------------------------------------- KPL


def kpl(payloads: list[bytes], keys: list[str], shift: int = 0) -> bytes:
    """An aggregate as the KPL writes it; `shift` moves key indexes (past the table: the record's own key)."""
    agg = aggregated_record_class()()
    agg.partition_key_table.extend(keys)
    for i, data in enumerate(payloads):
        rec = agg.records.add()
        rec.partition_key_index = (i + shift) % (len(keys) + 2) if keys else 0
        rec.data = data
    body: bytes = agg.SerializeToString()
    return KPL_MAGIC + body + hashlib.md5(body, usedforsecurity=False).digest()


def _flip(data: bytes, at: int) -> bytes:
    i = len(KPL_MAGIC) + at % (len(data) - len(KPL_MAGIC))
    return data[:i] + bytes([data[i] ^ 0x5A]) + data[i + 1 :]


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Generated:
    """One Kinesis record's data (bytes, or a str taken as its base64 as received); a valid KPL aggregate
    holds `users` user records, anything else is one record."""

    data: bytes | str
    users: int = 1
    aggregate: bool = False


payload_bytes = st.one_of(
    st.builds(_dumps, objects, st.booleans()),
    st.builds(_dumps, json_values, st.booleans()),
    st.binary(max_size=64),
)
valid_kpl = st.builds(
    lambda ps, keys, shift: Generated(kpl(ps, keys, shift), len(ps), aggregate=True),
    st.lists(payload_bytes, min_size=1, max_size=5),
    st.lists(st.text(max_size=300), max_size=3),
    st.integers(0, 3),
)
records = st.one_of(
    st.builds(Generated, payload_bytes),
    st.builds(Generated, st.builds(_dumps, objects, st.booleans())),
    st.builds(
        lambda d, inside: Generated(_deep(d, inside)), st.sampled_from([127, 129, 1_000, 100_000]), st.booleans()
    ),
    st.sampled_from(
        [
            Generated(b'{"id":"n","f":{"x":NaN}}'),
            Generated(b'{"id":Infinity,"f":{"x":1}}'),
            Generated(b'{"id":"big","f":{"x":' + b"9" * 5000 + b"}}"),  # over Python's int-digit limit
            Generated(b'{"id":"e","f":{"x":1e999}}'),  # decodes to inf
            Generated(KPL_MAGIC + hashlib.md5(b"", usedforsecurity=False).digest()),  # an empty aggregate
            Generated(kpl([], ["k"])),  # a key table and no records
        ]
    ),
    st.builds(lambda t: Generated("@" + t), st.text(max_size=20)),  # not base64
    valid_kpl,
    st.builds(lambda g, at: Generated(_flip(g.data, at)), valid_kpl, st.integers(0, 10_000)),  # corrupt
    st.builds(lambda b: Generated(KPL_MAGIC + b), st.binary(max_size=64)),
    st.builds(lambda o: Generated(_dumps(o, True)), st.fixed_dictionaries({"id": huge_texts, "f": features})),
)
partition_keys = st.one_of(st.text(min_size=1, max_size=20), st.just("p" * 256), st.just("\U0001f600" * 128))


@st.composite
def events(draw: st.DrawFn, max_records: int = 20) -> tuple[dict[str, Any], list[tuple[str, int | None]]]:
    """A Kinesis event and the user-record positions it holds, in order."""
    gens = draw(st.lists(records, min_size=1, max_size=max_records))
    out: list[dict[str, Any]] = []
    expected: list[tuple[str, int | None]] = []
    for i, g in enumerate(gens):
        seq = 49_000_000_000 + 10 * i
        out.append(kinesis_record(g.data, seq, draw(partition_keys)))
        expected += [(str(seq), s) for s in range(g.users)] if g.aggregate else [(str(seq), None)]
    return {"Records": out}, expected


# --------------------------------------------------------------------------- sinks


class Faults:
    """Sink faults drawn per example: failed entries, throttled calls, dead letters SQS refuses for good.

    A plain Random from a drawn seed, not Hypothesis' own: the shadow's sink calls it from its thread.
    """

    def __init__(self, seed: int, fail: float, throttle: float, reject: float) -> None:
        self.rnd, self.fail, self.throttle_p, self.reject = random.Random(seed), fail, throttle, reject
        self.seed = seed
        self.active = True

    def __repr__(self) -> str:
        return f"Faults(seed={self.seed}, fail={self.fail}, throttle={self.throttle_p}, reject={self.reject})"

    def shadow(self) -> Faults:
        """An independent copy for a sink used from another thread."""
        return Faults(self.seed + 1, self.fail, self.throttle_p, self.reject)

    def kinesis(self, key: str, data: bytes) -> str | None:
        return "retry" if self.active and self.rnd.random() < self.fail else None

    def sqs(self, reason: str, body: bytes) -> str | None:
        if self.reject and b'"data":' in body and self.rnd.random() < self.reject:
            return "reject"  # content refused: every time, for this body (a fallback carries no data)
        return "retry" if self.active and self.rnd.random() < self.fail else None

    def throttle(self) -> bool:
        return self.active and self.rnd.random() < self.throttle_p


faults = st.builds(
    Faults, st.integers(0, 2**32), st.sampled_from([0, 0.1, 0.5]), st.sampled_from([0, 0.3]),
    st.sampled_from([0, 0.3, 1.0]),
)  # fmt: skip


# --------------------------------------------------------------------------- the invariant


def position(out: dict[str, Any]) -> tuple[str, int | None]:
    """Where an output came from: a prediction's source, or a dead letter's own fields."""
    src = out.get("source", out)
    return str(src["sequence_number"]), src["sub_sequence_number"]


def check_outputs(predictions: list[Any], dead_letters: list[Any]) -> None:
    """Every output is what the README promises: a prediction with its source, a dead letter with a known reason."""
    for p in predictions:
        assert set(p) - {"id_sha256"} == {"id", "prediction", "model", "source"}, p.keys()
        assert len(json.dumps(p["id"])) <= ID_MAX_BYTES
    for d in dead_letters:
        assert d["reason"] in REASONS, d["reason"]
        if not d.get("fallback"):
            assert len(json.dumps(d["id"])) <= ID_MAX_BYTES
            if d["data_encoding"] == "base64":
                base64.b64decode(d["data"], validate=True)


@dataclass
class Ledger:
    """Positions written over the redeliveries of one event: each round exactly once before its checkpoint."""

    expected: list[tuple[str, int | None]]
    written: Counter[tuple[str, int | None]] = field(default_factory=Counter)

    def round(self, event: dict[str, Any], response: Any, outputs: list[Any]) -> dict[str, Any] | None:
        """Check one delivery; the event to redeliver from its checkpoint, or None when it is done."""
        seqs = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
        here = [p for p in self.expected if p[0] in set(seqs)]
        got = [position(o) for o in outputs]
        assert len(got) == len(set(got)), "a record was written twice in one delivery"
        assert set(got) <= set(here), "an output names a record that was not delivered"
        self.written.update(got)
        failures = response["batchItemFailures"]
        if not failures:
            assert set(got) == set(here), "a record was neither scored nor dead-lettered nor reported"
            return None
        first = min(seqs.index(f["itemIdentifier"]) for f in failures)  # ValueError: not of this batch
        assert {p for p in here if seqs.index(p[0]) < first} <= set(got), "a record before the checkpoint is lost"
        return {"Records": event["Records"][first:]}

    def nothing_lost(self) -> None:
        missing = set(self.expected) - set(self.written)
        assert not missing, f"lost after redelivery: {sorted(missing)[:5]}"
