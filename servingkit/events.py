"""Lambda event payloads built the way the event source mapping builds them, for local runs, benchmarks and tests."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from typing import Any

STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/rides-in"


def kinesis_record(
    data: bytes | str,
    seq: int,
    key: str = "k",
    shard: str = "shardId-000000000000",
    *,
    stream_arn: str = STREAM_ARN,
) -> dict[str, Any]:
    """One Kinesis record of an ESM event; `str` data is taken as already base64."""
    raw = data if isinstance(data, str) else base64.b64encode(data).decode()
    return {
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard}:{seq}",
        "eventName": "aws:kinesis:record",
        "eventSourceARN": stream_arn,
        "awsRegion": "us-east-1",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/scorer",
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": key,
            "sequenceNumber": str(seq),
            "data": raw,
            "approximateArrivalTimestamp": 1_760_000_000.0 + seq / 1000,
        },
    }


def kinesis_event(
    payloads: Sequence[Any], start_seq: int = 49_000_000_000, key_field: str | None = None
) -> dict[str, Any]:
    """Objects are JSON-encoded; bytes and str are taken as raw data (str = already base64)."""
    records = []
    for i, p in enumerate(payloads):
        if isinstance(p, (bytes, str)):
            data: bytes | str = p
            key = f"k{i}"
        else:
            data = json.dumps(p).encode()
            key = str(p.get(key_field, f"k{i}")) if key_field and isinstance(p, dict) else f"k{i}"
        records.append(kinesis_record(data, start_seq + i, key))
    return {"Records": records}


def kpl_aggregate(payloads: Iterable[Any], key_prefix: str = "agg") -> bytes:
    """Pack JSON payloads the way the Kinesis Producer Library does (magic, protobuf, MD5)."""
    import aws_kinesis_agg.aggregator as agg

    aggregator = agg.RecordAggregator()
    for i, p in enumerate(payloads):
        aggregator.add_user_record(f"{key_prefix}-{i}", json.dumps(p).encode())
    _, _, data = aggregator.clear_and_get().get_contents()
    return bytes(data)
