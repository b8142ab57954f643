"""The pre-traffic release check against the real image: CodeDeploy's hook invokes a version built as deploy
builds it, with the example and predictions `publish` records, and the smoke test writes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lambda_fn.release_checks import Expectation, InvocationFailedError, check_before_traffic
from servingkit.publish_smoke import smoke_example
from tests.image.conftest import Provisioned, TemplateFunction


@pytest.fixture
def smoke(provisioned: Provisioned, tmp_path: Path) -> dict[str, Any]:
    model = provisioned.release
    example = smoke_example(model.model_dir, model.sha256, cache=tmp_path / "smoke", allow_env_mismatch=False)
    assert example is not None and example["inputs"], "the demo model records an input example"
    return example


def _invoker(functions: dict[str, Any]) -> Any:
    def invoke(target: str, event: dict[str, Any]) -> Any:
        result = functions[target].invoke(event, timeout_s=180)
        if result.error is not None:
            raise InvocationFailedError(f"{result.error.type}: {result.error.message}")
        return result.payload

    return invoke


def test_the_pre_traffic_check_passes_on_the_image_and_catches_a_wrong_prediction(
    run_function: Any,
    scorer: TemplateFunction,
    api: TemplateFunction,
    provisioned: Provisioned,
    smoke: dict[str, Any],
) -> None:
    written_before = _written(provisioned)  # the tier's emulator may already hold other tests' records
    functions = {
        "scorer": run_function(scorer, provisioned.environment, name="serving-local-scorer"),
        "api": run_function(api, provisioned.environment, name="serving-local-api"),
    }
    invoke = _invoker(functions)
    expected = Expectation(
        sha256=provisioned.release.sha256, rows=smoke["inputs"], predictions=list(smoke["predictions"])
    )
    for target in functions:
        decision = check_before_traffic(invoke, target, expected)
        assert decision.succeeded, decision.reason
    wrong = [float(p) + 1.0 for p in smoke["predictions"]]
    decision = check_before_traffic(
        invoke, "scorer", Expectation(sha256=expected.sha256, rows=expected.rows, predictions=wrong)
    )
    assert not decision.succeeded and "prediction 0" in decision.reason, decision.reason
    other = check_before_traffic(invoke, "api", Expectation(sha256="0" * 64, rows=expected.rows))
    assert not other.succeeded and "0" * 12 in other.reason, other.reason
    assert _written(provisioned) == written_before, "a smoke test writes nothing"


def _written(provisioned: Provisioned) -> tuple[int, int]:
    """Records on the output stream and messages in the dead-letter queue."""
    kinesis, stream = provisioned.clients["kinesis"], provisioned.resources.topology.output_stream.name
    records = 0
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        it = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
        records += len(kinesis.get_records(ShardIterator=it["ShardIterator"], Limit=10000)["Records"])
    attributes = provisioned.clients["sqs"].get_queue_attributes(
        QueueUrl=provisioned.resources.dlq_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return records, sum(int(v) for v in attributes.values())
