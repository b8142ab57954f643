"""Capture records (SageMaker-like fields), Hive-partitioned keys, bounded gzip JSON-lines objects."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta

import numpy as np

from lambda_fn.monitoring.capture import CaptureRecord, ModelIdentity, encode_objects, object_key, read_lines

MODEL = ModelIdentity("taxi-ride-duration", "3", "ab" * 32)
T0 = datetime(2026, 12, 1, 11, 59, 58, 123456, tzinfo=UTC)


def record(i: int, **kw: object) -> CaptureRecord:
    base: dict[str, object] = {
        "inference_id": f"ride-{i}",
        "event_id": f"ev-{i}",
        "features": {"PU_DO": "132_48", "trip_distance": 17.2, "pickup_hour": np.int64(11)},
        "prediction": np.float64(41.7),
        "model": MODEL,
        "variant": "primary",
        "time": T0 + timedelta(seconds=i),
        "source": {"shard_id": "shardId-000000000001", "sequence_number": str(i), "sub_sequence_number": None},
    }
    base.update(kw)
    return CaptureRecord(**base)  # type: ignore[arg-type]


def test_record_shape_follows_sagemaker_capture() -> None:
    d = read_lines(encode_objects([record(1)], "cap").objects[0][1])[0]
    assert d["eventVersion"] == "0"
    assert d["eventMetadata"] == {
        "eventId": "ev-1",
        "inferenceId": "ride-1",
        "inferenceTime": "2026-12-01T11:59:59.123Z",
    }
    assert d["captureData"]["endpointInput"]["data"] == {"PU_DO": "132_48", "trip_distance": 17.2, "pickup_hour": 11}
    assert (
        d["captureData"]["endpointInput"]["encoding"] == "JSON" and d["captureData"]["endpointInput"]["mode"] == "INPUT"
    )
    assert d["captureData"]["endpointOutput"]["data"] == 41.7
    assert d["model"] == {"name": "taxi-ride-duration", "version": "3", "sha256": "ab" * 32}
    assert d["variant"] == "primary" and d["source"]["sequence_number"] == "1"


def test_keys_are_hive_partitions_split_by_hour() -> None:
    out = encode_objects([record(i) for i in range(4)], "capture/", new_name=lambda: "u")
    keys = [k for k, _ in out.objects]
    assert keys == [
        f"capture/model=taxi-ride-duration/sha256={'ab' * 32}/variant=primary/date=2026-12-01/hour=11/u.jsonl.gz",
        f"capture/model=taxi-ride-duration/sha256={'ab' * 32}/variant=primary/date=2026-12-01/hour=12/u.jsonl.gz",
    ]
    assert [len(read_lines(b)) for _, b in out.objects] == [2, 2] and out.rows == 4 and out.dropped == 0
    odd = object_key("p", ModelIdentity("a/b=c d", "1", "x"), "shadow/1", T0, "n")
    assert odd == "p/model=a%2Fb%3Dc%20d/sha256=x/variant=shadow%2F1/date=2026-12-01/hour=11/n.jsonl.gz"


def test_strict_json_bounded_objects_and_oversized_records_dropped() -> None:
    hostile = record(0, features={"x": float("nan"), "y": float("inf"), "z": "\ud800", "w": object()},
                     prediction=float("-inf"))  # fmt: skip
    out = encode_objects([hostile], "p")
    text = gzip.decompress(out.objects[0][1]).decode("utf-8")
    assert "NaN" not in text and "Infinity" not in text
    d = json.loads(text)
    assert d["captureData"]["endpointInput"]["data"]["x"] is None and d["captureData"]["endpointOutput"]["data"] is None
    assert d["captureData"]["endpointInput"]["data"]["z"] == "\ufffd"
    many = encode_objects([record(i % 2) for i in range(25)], "p", max_rows=10)
    assert [len(read_lines(b)) for _, b in many.objects] == [10, 10, 5]
    by_size = encode_objects([record(0) for _ in range(10)], "p", max_bytes=1500)
    assert all(len(gzip.decompress(b)) <= 1500 for _, b in by_size.objects) and by_size.rows == 10
    big = encode_objects([record(0, features={"blob": "x" * 300_000}), record(1)], "p")
    assert big.dropped == 1 and big.rows == 1
    same = [encode_objects([record(1)], "p", new_name=lambda: "n").objects for _ in range(2)]
    assert same[0] == same[1]  # gzip without a timestamp: equal records, equal bytes


def test_raw_fields_only_when_given() -> None:
    plain = read_lines(encode_objects([record(1)], "p").objects[0][1])[0]
    assert "rawInput" not in plain["captureData"]
    raw = read_lines(encode_objects([record(1, raw={"ride": {"a": 1}})], "p").objects[0][1])[0]
    assert raw["captureData"]["rawInput"]["data"] == {"ride": {"a": 1}}
