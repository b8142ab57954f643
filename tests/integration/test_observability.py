"""The handler's structured logs and CloudWatch embedded metrics, as Lambda would ship them."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from lambda_fn import handler, stream
from lambda_fn.config import Metric
from tests.helpers import FakeContext, kinesis_event, tiny_row
from tests.integration.conftest import Aws


def _json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def test_metrics_and_logs_carry_counts_latency_and_request_id(
    deployed: Aws, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "INFO")
    for log in (handler.logger, stream.logger):
        log.setLevel("INFO")
    # Powertools' stream handler holds the stdout of import time; read its formatted output directly.
    formatted: list[str] = []
    collect = logging.Handler()
    collect.emit = lambda record: formatted.append(handler.logger.registered_formatter.format(record))  # type: ignore[method-assign]
    handler.logger._logger.addHandler(collect)
    items: list[Any] = [{"id": f"r{i}", "features": tiny_row(i)} for i in range(9)] + [b"poison"]
    handler.stream_handler(kinesis_event(items), FakeContext())
    handler.logger._logger.removeHandler(collect)
    lines = _json_lines(capfd.readouterr().out) + [json.loads(f) for f in formatted]
    emf = [entry for entry in lines if "_aws" in entry]
    assert emf, "no embedded-metric document was printed"
    names = {m["Name"] for doc in emf for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {Metric.RECORDS_SCORED, Metric.RECORDS_DEAD_LETTERED, Metric.OUTPUT_RETRIES, Metric.BATCH_LATENCY} <= names
    assert Metric.MODEL_LOAD_TIME in names
    doc = next(d for d in emf if Metric.RECORDS_SCORED in d)
    assert doc[Metric.RECORDS_SCORED] == [9.0] and doc[Metric.RECORDS_DEAD_LETTERED] == [1.0]
    assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == Metric.NAMESPACE
    batch_log = next(entry for entry in lines if entry.get("message") == "batch scored")
    assert batch_log["function_request_id"] == FakeContext().aws_request_id
    assert batch_log["scored"] == 9 and batch_log["dead_letter_reasons"] == {"not_json": 1}
    for log in (handler.logger, stream.logger):
        log.setLevel("WARNING")
