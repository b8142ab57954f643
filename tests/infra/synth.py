"""Synthesized variants of the stack for the infra tier, and the CDK CLI's offline environment.

jsii synth is slow, so each variant is synthesized once per session (conftest's fixtures share them).
Every synth runs cdk-nag's AwsSolutions pack (as `app.py` does): a variant with an unacknowledged
finding fails to synthesize, so each variant is also a nag check.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.node import prefer_wheel_node

ROOT = Path(__file__).resolve().parents[2]
SHA = "0123456789abcdef" * 4
OTHER_SHA = "fedcba9876543210" * 4
BASE = {"model_uri": "s3://example-models/taxi/1", "model_sha256": SHA}

# Three synths cover every mode: stream (on-demand/provisioned), auth (api-key/iam), rollout (3), arch (2),
# models (external URI; own-bucket key + shadow + A/B variants), alarms on/off, EMR batch scoring on/off.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": dict(BASE),
    "provisioned": {
        **BASE,
        "stage": "prod",
        "stream_mode": "provisioned",
        "input_shards": 4,
        "output_shards": 3,
        "retention_hours": 48,
        "api_auth": "iam",
        "rollout": "linear",
        "architecture": "x86_64",
        "alarms": "false",
        "memory_mb": 3008,
        "timeout_seconds": 300,
        "reserved_concurrency": 20,
        "api_provisioned_concurrency": 2,
        "retry_attempts": -1,
        "max_record_age_seconds": -1,
    },
    "rollout": {
        "model_key": "models/taxi/2",
        "model_sha256": SHA,
        "stage": "qa",
        "rollout": "all-at-once",
        "alarm_email": "ops@example.com",
        "base_image": "public.ecr.aws/lambda/python:3.13.2026.06.05.14@sha256:" + "ab" * 32,
        "batch_scoring": "true",
        "shadow_model_uri": "s3://example-models/taxi/3",
        "shadow_model_sha256": OTHER_SHA,
        "model_variants": json.dumps(
            [
                {"name": "a", "uri": "s3://example-models/taxi/1", "sha256": SHA, "weight": 90},
                {"name": "b", "uri": "s3://ab-models/taxi/4/model.skops", "sha256": OTHER_SHA, "weight": 10},
            ]
        ),
    },
}


REF_SHA = "9c1e" * 16
MONITORED_BASE = {
    **BASE,
    "model_name": "taxi",
    "monitoring": "true",
    "model_reference_uri": "s3://example-models/taxi/1/reference.json",
    "model_reference_sha256": REF_SHA,
}
# Prediction monitoring (issue 14), apart from VARIANTS so the three templates above stay as they were: one with
# every monitoring default, one with every monitoring key set, A/B arms (one serving another model) and a shadow.
MONITORED: dict[str, dict[str, Any]] = {
    "monitored": dict(MONITORED_BASE),
    "monitored_ab": {
        **MONITORED_BASE,
        "stage": "ab",
        "monitoring_sample_rate": 0.25,
        "monitoring_payload": "raw",
        "monitoring_hash_ids": "true",
        "monitoring_capture_timeout_ms": 150,
        "monitoring_schedule_minutes": 5,
        "monitoring_short_window_minutes": 5,
        "monitoring_long_window_hours": 6,
        "monitoring_capture_days": 7,
        "monitoring_report_days": 90,
        "monitoring_drift_alarm_features": 2,
        "monitoring_quality_alarm_violations": 3,
        "monitoring_labels": "true",
        "monitoring_label_delay_minutes": 30,
        "monitoring_label_span_minutes": 15,
        "monitoring_label_task": "classification",
        "monitoring_label_days": 14,
        "monitoring_labels_stream": "true",
        "monitoring_quality_degradation_ratio": 1.5,
        "monitoring_quality_min_labels": 50,
        "model_training_metrics": json.dumps({"accuracy": 0.91, "auc": 0.95, "f1": 0.88}),
        "shadow_model_uri": "s3://example-models/taxi/3",
        "shadow_model_sha256": OTHER_SHA,
        "model_variants": json.dumps(
            [
                {"name": "a", "uri": "s3://example-models/taxi/1", "sha256": SHA, "weight": 90},
                {"name": "b", "uri": "s3://ab-models/taxi/4/model.skops", "sha256": OTHER_SHA, "weight": 10},
            ]
        ),
    },
}
# Blue/green with a release laid out by publish (<prefix>/<name>/<sha256>/model): the hooks read its manifest.
RELEASES: dict[str, dict[str, Any]] = {
    "bluegreen": {
        "model_uri": f"s3://example-models/models/taxi/{SHA}/model",
        "model_sha256": SHA,
        "model_name": "taxi",
        "model_version": "3",
        "stage": "bg",
        "rollout": "blue-green",
    },
}
# The next model-only release (same code, another model): a new function version, through the same hooks.
RELEASES["bluegreen_next"] = {
    **RELEASES["bluegreen"],
    "model_uri": f"s3://example-models/models/taxi/{OTHER_SHA}/model",
    "model_sha256": OTHER_SHA,
    "model_version": "4",
}
CONTEXTS = {**VARIANTS, **MONITORED, **RELEASES}


@dataclass
class Synth:
    name: str
    context: dict[str, Any]
    template: dict[str, Any]
    outdir: Path

    def resources(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == type_}

    def one(self, type_: str, **match: Any) -> dict[str, Any]:
        """The properties of the only resource of this type whose properties contain `match`."""
        found: list[dict[str, Any]] = [
            v.get("Properties", {})
            for v in self.resources(type_).values()
            if all(v.get("Properties", {}).get(k) == m for k, m in match.items())
        ]
        assert len(found) == 1, f"{len(found)} {type_} matching {match}"
        return found[0]


_CACHE: dict[str, Synth] = {}


def synth(name: str, tmp_root: Path) -> Synth:
    if name not in _CACHE:
        prefer_wheel_node()
        from infra.stack import build_app

        outdir = tmp_root / name
        assembly = build_app(CONTEXTS[name], outdir=str(outdir)).synth()
        (stack,) = assembly.stacks
        _CACHE[name] = Synth(name, CONTEXTS[name], stack.template, outdir)
    return _CACHE[name]


def cli_env(tmp: Path) -> dict[str, str]:
    """Offline and quiet: no telemetry, no notices, CDK_HOME in the project, no credentials to look up."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env.update(
        CDK_HOME=str(ROOT / ".cdk-home"),
        CDK_DISABLE_CLI_TELEMETRY="true",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(tmp / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp / "none"),
    )
    return env
