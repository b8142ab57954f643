from __future__ import annotations

import base64
import json

from lambda_fn.records import Reason, decode_event, map_payloads
from tests.helpers import kinesis_event, kinesis_record, kpl_aggregate


def test_plain_records_keep_their_position() -> None:
    event = kinesis_event([{"a": 1}, {"a": 2}], start_seq=100)
    recs = decode_event(event)
    assert [r.sequence_number for r in recs] == ["100", "101"]
    assert all(r.sub_sequence_number is None and r.shard_id == "shardId-000000000000" for r in recs)
    map_payloads(recs, None, None)
    assert [r.features for r in recs] == [{"a": 1}, {"a": 2}]


def test_kpl_aggregate_is_split_into_every_user_record() -> None:
    payloads = [{"ride_id": f"r{i}", "ride": {"x": i}} for i in range(5)]
    event = {
        "Records": [kinesis_record(kpl_aggregate(payloads), 7), kinesis_record(b'{"ride_id":"solo","ride":{}}', 8)]
    }
    recs = decode_event(event)
    assert len(recs) == 6
    assert [r.sub_sequence_number for r in recs[:5]] == [0, 1, 2, 3, 4]
    assert {r.sequence_number for r in recs[:5]} == {"7"}
    assert [r.partition_key for r in recs[:5]] == [f"agg-{i}" for i in range(5)]
    map_payloads(recs, "ride", "ride_id")
    assert [r.record_id for r in recs] == ["r0", "r1", "r2", "r3", "r4", "solo"]
    assert recs[3].features == {"x": 3}


def test_corrupt_aggregate_becomes_one_failure_with_reason() -> None:
    data = bytearray(kpl_aggregate([{"a": 1}, {"a": 2}]))
    data[10] ^= 0xFF
    recs = decode_event({"Records": [kinesis_record(bytes(data), 1)]})
    assert len(recs) == 1
    assert recs[0].reason == Reason.KPL_CORRUPT
    assert "MD5" in (recs[0].detail or "")


def test_each_kind_of_poison_gets_its_reason() -> None:
    event = {
        "Records": [
            kinesis_record("%%%not-base64", 1),
            kinesis_record(b"\xff\xfe not utf8 json", 2),
            kinesis_record(b"[1, 2, 3]", 3),
            kinesis_record(b'{"ride_id": "r4", "other": 1}', 4),
            kinesis_record(json.dumps({"ride_id": 9, "ride": {"x": 1}}).encode(), 5),
        ]
    }
    recs = decode_event(event)
    map_payloads(recs, "ride", "ride_id")
    assert [r.reason for r in recs] == [
        Reason.NOT_BASE64,
        Reason.NOT_JSON,
        Reason.NOT_OBJECT,
        Reason.MISSING_FEATURES,
        None,
    ]
    assert "'ride'" in (recs[3].detail or "")
    assert recs[3].record_id == "r4"  # a dead letter without features still names its record
    assert recs[4].record_id == 9


def test_id_is_looked_up_inside_features_when_absent_at_top_level() -> None:
    recs = decode_event({"Records": [kinesis_record(base64.b64encode(b'{"id": "x1", "v": 2}').decode(), 1)]})
    map_payloads(recs, None, "id")
    assert recs[0].record_id == "x1"
    assert recs[0].features == {"id": "x1", "v": 2}


def test_kpl_aggregate_decodes_in_a_fresh_interpreter_that_imports_only_the_handler(tmp_path) -> None:
    """As in Lambda: nothing imports aws-kinesis-agg's aggregator first (it edits sys.path as a side effect)."""
    import subprocess
    import sys

    payloads = [{"ride_id": f"r{i}", "ride": {"trip_distance": i}} for i in range(3)]
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"Records": [kinesis_record(kpl_aggregate(payloads), 1)]}))
    probe = (
        "import json, sys\n"
        "import lambda_fn.handler\n"  # from the installed package (make venv installs it editable)
        "from lambda_fn.records import decode_event\n"
        "assert not any(m.startswith('aws_kinesis_agg.') and 'aggregator' in m for m in sys.modules)\n"
        f"users = decode_event(json.load(open({str(event)!r})))\n"
        "print(json.dumps([[u.sub_sequence_number, u.reason, u.data.decode() if u.data else None] for u in users]))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "POWERTOOLS_METRICS_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run([sys.executable, "-I", "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    decoded = json.loads(result.stdout.strip().splitlines()[-1])
    assert decoded == [[i, None, json.dumps(p)] for i, p in enumerate(payloads)]
