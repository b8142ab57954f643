"""Context validation: every bad value fails before synthesis with a message naming the context key."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from infra.environment import api_environment, scorer_environment
from infra.settings import deploy_settings
from infra.topology import Ctx, TopologyError, topology
from lambda_fn.config import Env, settings_from
from tests.infra.synth import BASE, SHA


def test_defaults() -> None:
    s = deploy_settings(BASE)
    assert (s.architecture, s.api_auth, s.rollout, s.alarms) == ("arm64", "api-key", "canary", True)
    assert s.topology.input_stream.mode == "on-demand"
    assert [m.uri for m in s.models()] == [BASE["model_uri"]]
    assert [deploy_settings({**BASE, "rollout": r}).rollout for r in ("linear", "all-at-once", "blue-green")] == [
        "linear",
        "all-at-once",
        "blue-green",
    ]


@pytest.mark.parametrize(
    ("context", "key"),
    [
        ({}, Ctx.MODEL_URI),
        ({"model_uri": "https://example.com/model", "model_sha256": SHA}, Ctx.MODEL_URI),
        ({"model_uri": "s3://bucket-only", "model_sha256": SHA}, Ctx.MODEL_URI),
        ({"model_uri": "s3://b/k"}, Ctx.MODEL_SHA256),
        ({"model_uri": "s3://b/k", "model_sha256": "abc"}, Ctx.MODEL_SHA256),
        ({**BASE, "model_key": "models/x"}, Ctx.MODEL_KEY),
        ({**BASE, "stream_mode": "serverless"}, Ctx.STREAM_MODE),
        ({**BASE, "input_shards": 0}, Ctx.INPUT_SHARDS),
        ({**BASE, "architecture": "arm"}, Ctx.ARCHITECTURE),
        ({**BASE, "memory_mb": 64}, Ctx.MEMORY_MB),
        ({**BASE, "api_timeout_seconds": 60}, Ctx.API_TIMEOUT_SECONDS),
        ({**BASE, "log_retention_days": 10}, Ctx.LOG_RETENTION_DAYS),
        ({**BASE, "api_auth": "cognito"}, Ctx.API_AUTH),
        ({**BASE, "base_image": "public.ecr.aws/lambda/python"}, Ctx.BASE_IMAGE),
        ({**BASE, "base_image": "python:3.11@sha256:abc"}, Ctx.BASE_IMAGE),
        ({**BASE, "rollout": "rolling"}, Ctx.ROLLOUT),  # no meaning for one function: docs/lifecycle.md
        ({**BASE, "alarms": "maybe"}, Ctx.ALARMS),
        ({**BASE, "alarm_email": "not-an-address"}, Ctx.ALARM_EMAIL),
        ({**BASE, "max_record_age_seconds": 30}, Ctx.MAX_RECORD_AGE_SECONDS),
        ({**BASE, "api_reserved_concurrency": 2, "api_provisioned_concurrency": 5}, Ctx.API_PROVISIONED_CONCURRENCY),
        ({**BASE, "shadow_model_sha256": SHA}, Ctx.SHADOW_MODEL_URI),
        ({**BASE, "shadow_model_uri": "s3://b/shadow"}, Ctx.SHADOW_MODEL_SHA256),
        ({**BASE, "model_variants": "[{"}, Ctx.MODEL_VARIANTS),
        ({**BASE, "model_variants": "{}"}, Ctx.MODEL_VARIANTS),
        ({**BASE, "model_variants": json.dumps([{"name": "a", "uri": "s3://b/k", "sha256": SHA}])}, "weight"),
        ({**BASE, "model_variants": json.dumps([{"name": "a", "uri": "/tmp/m", "sha256": SHA, "weight": 1}])}, "uri"),
        (
            {**BASE, "model_variants": json.dumps([{"name": "a", "uri": "s3://b/k", "sha256": SHA, "weight": 1}] * 2)},
            "unique",
        ),
    ],
)
def test_bad_context_names_the_key(context: dict[str, Any], key: str) -> None:
    with pytest.raises(TopologyError, match=key):
        deploy_settings(context)


def test_the_local_cloud_refuses_a_record_age_lambda_would_refuse() -> None:
    """The topology is shared with the local poller: a value `cdk deploy` rejects is rejected locally too."""
    with pytest.raises(TopologyError, match=Ctx.MAX_RECORD_AGE_SECONDS):
        topology({"max_record_age_seconds": 30})
    assert topology({"max_record_age_seconds": 60}).trigger.max_record_age_seconds == 60


def test_environment_parses_with_the_lambdas_own_settings() -> None:
    s = deploy_settings({**BASE, "model_name": "taxi", "model_version": "7", "api_max_body_bytes": 4096})
    scorer = scorer_environment(s, model_bucket="bucket", output_stream="out", dlq_url="https://sqs/q")
    parsed = settings_from(scorer)
    assert parsed.require_stream_outputs() == ("out", "https://sqs/q")
    assert (parsed.model_name, parsed.model_version, parsed.model_sha256) == ("taxi", "7", SHA)
    api = settings_from(api_environment(s, model_bucket="bucket"))
    assert api.api_max_body_bytes == 4096 and api.output_stream_name is None
    assert Env.OUTPUT_STREAM_NAME not in api_environment(s, model_bucket="bucket")


def test_own_bucket_key_becomes_an_s3_uri() -> None:
    s = deploy_settings({"model_key": "/models/taxi/1/", "model_sha256": SHA})
    assert api_environment(s, model_bucket="kit-bucket")[Env.MODEL_URI] == "s3://kit-bucket/models/taxi/1"


def test_settings_and_topology_do_not_import_the_cdk() -> None:
    # The local cloud reads infra.topology (and may validate with infra.settings): it must not pay CDK's start-up.
    probe = "import sys, infra.topology, infra.settings, infra.environment; print('aws_cdk' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
