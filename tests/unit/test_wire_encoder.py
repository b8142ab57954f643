"""The one strict encoder (orjson underneath) answers as the standard strict encoder does: same JSON, same refusals."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lambda_fn.wire import encode_json, encode_json_bytes

REFERENCE = json.JSONEncoder(separators=(",", ":"), default=str, allow_nan=False).encode

CASES: list[Any] = [
    0.1,
    1e-05,
    1e16,
    -0.0,
    2**63,
    2**64,  # beyond orjson's 64 bits
    {"a": None, "b": [1, None, 2.5]},
    {1: 2, False: 3, None: 4, 1.5: 5},  # keys json turns into strings
    np.float64(1.5),  # a float subclass: a number
    np.int64(3),  # not an int: its str()
    "é ünïcode ☃ 𝄞",
    "\x00\x1f\x7f",
    "\ud800 lone surrogate",
    {"nested": {"deep": [[[[{"x": "y"}]]]]}},
    b"bytes",
    {"set": set()},
    (1, 2),
]
NON_FINITE: list[Any] = [
    float("nan"),
    float("inf"),
    [1.0, float("-inf")],
    {"a": {"b": [None, float("nan")]}},
    np.float64("nan"),
    {"k": [np.float64("inf")]},
]


@pytest.mark.parametrize("value", CASES, ids=repr)
def test_same_json_as_the_standard_strict_encoder(value: Any) -> None:
    out = encode_json_bytes(value)
    assert out.isascii() and b"NaN" not in out and b"Infinity" not in out
    assert json.loads(out) == json.loads(REFERENCE(value))
    assert encode_json(value) == out.decode()


@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
def test_non_finite_values_are_refused_as_json_refuses_them(value: Any) -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        REFERENCE(value)
    with pytest.raises(ValueError, match="not JSON compliant"):
        encode_json_bytes(value)


def test_what_json_cannot_write_raises_the_same_error() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    for value in (cyclic, {(1, 2): 3}):
        with pytest.raises((ValueError, TypeError)) as expected:
            REFERENCE(value)
        with pytest.raises(type(expected.value)):
            encode_json_bytes(value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_never_nan_and_always_the_reference_answer(value: Any) -> None:
    try:
        reference = REFERENCE(value)
    except ValueError:
        with pytest.raises(ValueError):
            encode_json_bytes(value)
        return
    out = encode_json_bytes(value)
    assert out.isascii()
    decoded = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} written"))
    assert _same(decoded, json.loads(reference))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b)
