"""The whole pipeline against LocalStack: producer → input stream → poller → real handler → output
stream / DLQ, 10,000 records with 1% poison, every record accounted for exactly once."""

from __future__ import annotations

import json

from servingkit.localcloud.cloud import run_pipeline
from tests.conftest import ROOT

RECORDS = 10_000


def test_ten_thousand_records_with_one_percent_poison_nothing_lost_nothing_twice(pointed, record_property):
    summary = run_pipeline(
        records=RECORDS,
        endpoint_url=pointed.endpoint,
        poison_rate=0.01,
        model_dir=ROOT / "build" / "model",
        release=ROOT / "build" / "release.json",
        timeout_s=240,
    )
    figures = summary.as_dict()
    figures.pop("samples")
    record_property("localstack_e2e", json.dumps(figures))
    print("localstack e2e:", json.dumps(figures))

    assert summary.endpoint == pointed.endpoint
    assert summary.input_shards >= 2
    assert summary.records_in == RECORDS
    assert summary.poison_in == 100
    assert summary.predicted == 9_900
    assert summary.dead_lettered == 100
    assert summary.lost == 0
    assert summary.duplicates == 0
    assert summary.misrouted == 0
    assert summary.id_mismatches == 0
    assert summary.skipped_on_failure == 0
    assert summary.kpl_user_records > 0  # KPL aggregates went through LocalStack's Kinesis too
    assert sum(summary.dlq_reasons.values()) == 100
    assert summary.poller["function_errors"] == 0 and summary.poller["errors"] == []
    assert summary.complete
    for sample in summary.samples:
        assert isinstance(sample["prediction"], float) and sample["prediction"] > 0
        assert sample["model"]["sha256"] == json.loads((ROOT / "build" / "release.json").read_text())["sha256"]
