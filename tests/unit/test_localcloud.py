"""Local cloud pieces that need no server: endpoint environment, demo records, release pinning, accounting."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from lambda_fn.records import decode_event, map_payloads
from servingkit.localcloud.accounting import skipped_positions
from servingkit.localcloud.emulator import pointed_at
from servingkit.localcloud.resources import ExportedModel, ResourceError
from servingkit.localcloud.traffic import POISON_KINDS, make_units


def test_pointed_at_uses_only_standard_variables_and_restores_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "production")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://s3.example.com")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREALLOOKING")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with pointed_at("http://127.0.0.1:5123", "eu-west-1"):
        assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5123"
        assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
        assert os.environ["AWS_REGION"] == os.environ["AWS_DEFAULT_REGION"] == "eu-west-1"
        assert "AWS_PROFILE" not in os.environ and "AWS_ENDPOINT_URL_S3" not in os.environ
        import boto3

        assert boto3.client("kinesis").meta.endpoint_url == "http://127.0.0.1:5123"
    assert os.environ["AWS_PROFILE"] == "production"
    assert os.environ["AWS_ENDPOINT_URL_S3"] == "https://s3.example.com"
    assert os.environ["AWS_ACCESS_KEY_ID"] == "AKIAREALLOOKING"
    assert "AWS_ENDPOINT_URL" not in os.environ


def _event(units: list[Any]) -> dict[str, Any]:
    records = []
    for i, u in enumerate(units):
        records.append(
            {
                "eventID": f"shardId-000000000000:{i}",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/in",
                "kinesis": {
                    "partitionKey": u.key,
                    "sequenceNumber": str(i),
                    "data": base64.b64encode(u.data).decode(),
                    "approximateArrivalTimestamp": 0.0,
                },
            }
        )
    return {"Records": records}


def test_demo_records_have_exact_poison_and_valid_kpl_aggregates() -> None:
    units = make_units(2_000, poison_rate=0.01, kpl_share=0.1, seed=3)
    items = [item for u in units for item in u.items]
    assert len(items) == 2_000 and len({label for label, _ in items}) == 2_000
    kinds = [kind for _, kind in items if kind]
    assert len(kinds) == 20 and set(kinds) == set(POISON_KINDS)
    assert any(u.aggregated for u in units)
    records = decode_event(_event(units))
    map_payloads(records, "ride", "ride_id")
    assert len(records) == 2_000  # every KPL user record comes out
    expected = [item for u in units for item in u.items]
    for rec, (label, kind) in zip(records, expected, strict=True):
        if kind is None:
            assert rec.reason is None and rec.record_id == label
        elif kind in ("not_json", "not_utf8", "not_object", "missing_features", "kpl_corrupt"):
            assert rec.reason is not None  # rejected before the model; the others fail in the hook/schema


def test_release_must_match_its_pinned_sha256(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "MLmodel").write_text("flavors: {}\n")
    (tmp_path / "release.json").write_text(json.dumps({"name": "m", "version": "1", "sha256": "0" * 64}))
    with pytest.raises(ResourceError, match=r"pins 0{64}: give the release.json exported with it$"):
        ExportedModel.load(model, tmp_path / "release.json")  # not the default build: `make model` would not fix it
    with pytest.raises(ResourceError, match="not an MLflow model directory"):
        ExportedModel.load(tmp_path / "missing", tmp_path / "release.json")


def test_on_failure_messages_cover_their_sequence_number_range() -> None:
    ledger = {
        ("s0", "10", None): 1,
        ("s0", "20", 0): 1,
        ("s0", "20", 1): 1,
        ("s0", "30", None): 1,
        ("s1", "20", None): 1,
    }
    message = {"KinesisBatchInfo": {"shardId": "s0", "startSequenceNumber": "15", "endSequenceNumber": "30"}}
    assert skipped_positions(ledger, [message]) == {("s0", "20", 0), ("s0", "20", 1), ("s0", "30", None)}
