"""cdk-nag: every variant synthesizes with zero unacknowledged AwsSolutions findings, and the check is really on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.node import prefer_wheel_node
from tests.infra.synth import BASE, Synth


def test_variant_passes_awssolutions_and_records_each_acknowledgment(every: Synth) -> None:
    # The synth itself fails on any unacknowledged finding (see the next test); the report stays empty.
    report = json.loads((every.outdir / "validation-report.json").read_text())
    assert report["pluginReports"] == []
    # Acknowledgments are written into the template (audit trail), each with its reason.
    acknowledged = {
        rule["id"]: rule["reason"]
        for res in every.template["Resources"].values()
        for rule in res.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    }
    expected = {"AwsSolutions-S1", "AwsSolutions-SQS3", "AwsSolutions-APIG3", "AwsSolutions-COG4"}
    assert expected <= {rule.split("[")[0] for rule in acknowledged}
    assert all(len(reason) > 40 for reason in acknowledged.values())


def test_an_unacknowledged_finding_fails_synth(tmp_path: Path) -> None:
    prefer_wheel_node()
    from aws_cdk import Stack
    from aws_cdk import aws_sqs as sqs

    from infra.stack import build_app

    app = build_app(BASE, outdir=str(tmp_path))
    (stack,) = [c for c in app.node.children if isinstance(c, Stack)]
    sqs.Queue(stack, "Plain")  # no SSL enforcement, no DLQ
    with pytest.raises(RuntimeError, match="AwsSolutions-SQS4"):
        app.synth()
