"""The release hooks' decisions (lambda_fn.release_checks) with fakes: a real model answers the smoke test."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lambda_fn.config import settings_from
from lambda_fn.model_store import LoadedModel, artifact_sha256, load_model
from lambda_fn.release_checks import (
    SMOKE_TEST,
    Clients,
    Decision,
    Expectation,
    HookEnv,
    InvocationFailedError,
    answer_smoke_test,
    check_after_traffic,
    check_before_traffic,
    compare_predictions,
    is_smoke_test,
    lambda_invoker,
    run_hook,
    smoke_event,
)
from tests.helpers import save_mlflow_model, tiny_pipeline, tiny_row

TARGET = "arn:aws:lambda:us-east-1:123456789012:function:sk-dev-scorer:7"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    path = save_mlflow_model(tmp_path_factory.mktemp("m") / "model", tiny_pipeline())
    env = {"MODEL_URI": str(path), "MODEL_SHA256": artifact_sha256(path), "MODEL_NAME": "tiny", "MODEL_VERSION": "3"}
    env["MODEL_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    return load_model(settings_from(env))


def _rows() -> list[dict[str, Any]]:
    return [tiny_row(i) for i in range(5)]


def _healthy(model: LoadedModel) -> Any:
    """The serving function's smoke-test answer, through JSON as Lambda returns it."""

    def invoke(target: str, event: dict[str, Any]) -> Any:
        assert target == TARGET and is_smoke_test(event)
        return json.loads(json.dumps(answer_smoke_test(event, model)))

    return invoke


def _expected(model: LoadedModel, **overrides: Any) -> Expectation:
    recorded = answer_smoke_test(smoke_event(_rows()), model)["predictions"]
    values: dict[str, Any] = {"sha256": model.sha256, "name": "tiny", "version": "3", "rows": _rows()}
    values["predictions"] = recorded
    values.update(overrides)
    return Expectation(**values)


def test_a_healthy_version_passes(model: LoadedModel) -> None:
    decision = check_before_traffic(_healthy(model), TARGET, _expected(model))
    assert decision.succeeded and decision.status == "Succeeded"
    assert "predicts the 5 recorded outputs" in decision.reason


def test_a_wrong_sha256_fails_naming_both(model: LoadedModel) -> None:
    other = "0" * 64
    decision = check_before_traffic(_healthy(model), TARGET, _expected(model, sha256=other))
    assert not decision.succeeded and decision.status == "Failed"
    assert f"serves sha256 '{model.sha256}', the release pins '{other}'" in decision.reason


def test_a_wrong_version_or_name_fails(model: LoadedModel) -> None:
    decision = check_before_traffic(_healthy(model), TARGET, _expected(model, version="4"))
    assert not decision.succeeded and "version '3', the release pins '4'" in decision.reason
    unpinned = check_before_traffic(_healthy(model), TARGET, _expected(model, name=None, version=None))
    assert unpinned.succeeded  # name and version are checked when the deploy pins them


def test_a_wrong_prediction_fails_beyond_the_tolerance_only(model: LoadedModel) -> None:
    recorded = _expected(model).predictions
    assert recorded is not None
    off = [recorded[0] * (1 + 1e-3), *recorded[1:]]
    decision = check_before_traffic(_healthy(model), TARGET, _expected(model, predictions=off))
    assert not decision.succeeded and decision.reason.startswith(f"{TARGET}: prediction 0 is ")
    rounding = [recorded[0] * (1 + 1e-9), *recorded[1:]]  # another CPU's last bits
    assert check_before_traffic(_healthy(model), TARGET, _expected(model, predictions=rounding)).succeeded
    short = check_before_traffic(_healthy(model), TARGET, _expected(model, predictions=recorded[:4]))
    assert not short.succeeded and "expected 4 predictions" in short.reason


def test_a_failing_version_fails_with_its_error(model: LoadedModel) -> None:
    def crashing(target: str, event: dict[str, Any]) -> Any:
        raise InvocationFailedError('Unhandled: {"errorMessage": "checksum mismatch for s3://b/m"}')

    decision = check_before_traffic(crashing, TARGET, _expected(model))
    assert (
        not decision.succeeded and "failed the smoke test" in decision.reason and "checksum mismatch" in decision.reason
    )
    garbage = check_before_traffic(lambda t, e: {"batchItemFailures": []}, TARGET, _expected(model))
    assert not garbage.succeeded and "did not answer the smoke test" in garbage.reason


def test_a_version_rejecting_the_example_fails(model: LoadedModel) -> None:
    bad = [{**tiny_row(0), "distance": "far"}]
    decision = check_before_traffic(_healthy(model), TARGET, _expected(model, rows=bad, predictions=[1.0]))
    assert not decision.succeeded and "rejected the release's example" in decision.reason


def test_without_a_recorded_example_only_the_identity_is_checked(model: LoadedModel) -> None:
    decision = check_before_traffic(_healthy(model), TARGET, _expected(model, rows=[], predictions=None))
    assert decision.succeeded and "predictions not compared" in decision.reason


def test_compare_predictions_shapes() -> None:
    assert compare_predictions([1, "a", [0.5, 2]], [1.0, "a", [0.5, 2.0]], 1e-6, 1e-9) is None
    assert (
        compare_predictions(["a"], ["b"], 1e-6, 1e-9)
        == "prediction 0 is 'b', the release recorded 'a' (rel_tol 1e-06, abs_tol 1e-09)"
    )
    assert compare_predictions([True], [1], 1e-6, 1e-9) is not None  # a class label is not a number
    assert compare_predictions([{"p": 0.1}], [{"p": 0.1, "q": 1}], 1e-6, 1e-9) is not None


def test_the_smoke_answer_scores_and_names_the_model(model: LoadedModel) -> None:
    answer = answer_smoke_test({SMOKE_TEST: {"rows": _rows()}}, model)
    assert answer["model"] == {"name": "tiny", "version": "3", "sha256": model.sha256}
    assert len(answer["predictions"]) == 5 and answer["errors"] == {}
    assert answer_smoke_test({SMOKE_TEST: {"rows": "x"}}, model)["error"] == "rows must be a list of objects"
    assert not is_smoke_test({"Records": []}) and not is_smoke_test({SMOKE_TEST: 1})


class FakeLambda:
    def __init__(self, body: bytes, function_error: str | None = None) -> None:
        self.body, self.function_error = body, function_error
        self.calls: list[dict[str, Any]] = []

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        import io

        out: dict[str, Any] = {"StatusCode": 200, "Payload": io.BytesIO(self.body)}
        if self.function_error:
            out["FunctionError"] = self.function_error
        return out


def test_lambda_invoker_maps_function_errors() -> None:
    ok = FakeLambda(b'{"model": {}}')
    assert lambda_invoker(ok)(TARGET, {"a": 1}) == {"model": {}}
    assert ok.calls[0]["FunctionName"] == TARGET and ok.calls[0]["InvocationType"] == "RequestResponse"
    with pytest.raises(InvocationFailedError, match=r"Unhandled: .*boom"):
        lambda_invoker(FakeLambda(b'{"errorMessage": "boom"}', "Unhandled"))(TARGET, {})


class FakeCloudWatch:
    def __init__(self, states: dict[str, str], errors: list[float]) -> None:
        self.states, self.errors = states, errors
        self.queries: list[dict[str, Any]] = []

    def describe_alarms(self, AlarmNames: list[str]) -> dict[str, Any]:
        return {"MetricAlarms": [{"AlarmName": n, "StateValue": self.states[n]} for n in AlarmNames]}

    def get_metric_data(self, **kwargs: Any) -> dict[str, Any]:
        self.queries.append(kwargs)
        return {"MetricDataResults": [{"Id": "errors", "Values": self.errors}]}


def test_post_traffic_needs_quiet_alarms_and_no_errors() -> None:
    since, until = datetime(2026, 12, 1, 12, 0, 30, tzinfo=UTC), datetime(2026, 12, 1, 12, 6, tzinfo=UTC)
    quiet = FakeCloudWatch({"a": "OK", "b": "INSUFFICIENT_DATA"}, [0.0, 0.0])
    assert check_after_traffic(quiet, ["a", "b"], "sk-dev-api", "live", since, until).succeeded
    dims = quiet.queries[0]["MetricDataQueries"][0]["MetricStat"]["Metric"]["Dimensions"]
    assert {"Name": "Resource", "Value": "sk-dev-api:live"} in dims
    assert quiet.queries[0]["StartTime"] == since.replace(second=0)
    firing = check_after_traffic(
        FakeCloudWatch({"a": "ALARM", "b": "OK"}, [0.0]), ["a", "b"], "f", "live", since, until
    )
    assert not firing.succeeded and firing.reason == "alarms in ALARM after the shift: a"
    erring = check_after_traffic(FakeCloudWatch({}, [0.0, 2.0]), [], "f", "live", since, until)
    assert not erring.succeeded and "f:live had 2 errors" in erring.reason


class FakeCodeDeploy:
    def __init__(self) -> None:
        self.reports: list[dict[str, str]] = []

    def put_lifecycle_event_hook_execution_status(self, **kwargs: str) -> None:
        self.reports.append(kwargs)

    def get_deployment(self, deploymentId: str) -> dict[str, Any]:
        return {"deploymentInfo": {"createTime": datetime.now(UTC) - timedelta(minutes=5)}}


EVENT = {"DeploymentId": "d-ABC", "LifecycleEventHookExecutionId": "hook-1"}


def test_run_hook_reports_the_decision_to_codedeploy(model: LoadedModel) -> None:
    codedeploy = FakeCodeDeploy()
    env = {HookEnv.TARGET: TARGET, HookEnv.SHA256: model.sha256, HookEnv.MODEL_VERSION: "3"}
    answer = run_hook(EVENT, "pre", env, Clients(codedeploy, invoke=_healthy(model)))
    assert answer["status"] == "Succeeded" and codedeploy.reports == [
        {"deploymentId": "d-ABC", "lifecycleEventHookExecutionId": "hook-1", "status": "Succeeded"}
    ]
    post_env = {HookEnv.FUNCTION_NAME: "f", HookEnv.ALIAS: "live", HookEnv.ALARMS: "a"}
    post = run_hook(EVENT, "post", post_env, Clients(codedeploy, cloudwatch=FakeCloudWatch({"a": "ALARM"}, [])))
    assert post["status"] == "Failed" and codedeploy.reports[-1]["status"] == "Failed"


def test_a_hook_that_cannot_run_still_reports_failed(model: LoadedModel) -> None:
    codedeploy = FakeCodeDeploy()
    answer = run_hook(EVENT, "pre", {HookEnv.SHA256: model.sha256}, Clients(codedeploy, invoke=_healthy(model)))
    assert answer["status"] == "Failed" and "could not run: KeyError" in answer["reason"]
    assert codedeploy.reports[0]["status"] == "Failed"


def test_a_manifest_of_another_model_fails(model: LoadedModel, tmp_path: Path) -> None:
    class S3:
        def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
            import io

            return {"Body": io.BytesIO(json.dumps({"sha256": "f" * 64}).encode())}

    env = {HookEnv.TARGET: TARGET, HookEnv.SHA256: model.sha256, HookEnv.MANIFEST_URI: "s3://b/m/release.json"}
    answer = run_hook(EVENT, "pre", env, Clients(FakeCodeDeploy(), invoke=_healthy(model), s3=S3()))
    assert answer["status"] == "Failed" and "release manifest is of model ffff" in answer["reason"]
    assert Decision(True, "x").status == "Succeeded"


def test_the_hook_functions_start_without_the_serving_settings(tmp_path: Path) -> None:
    """Inside Lambda the handler module validates the serving settings at init; the hooks have none to give."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODEL_", "OUTPUT_", "DLQ_"))}
    env.update(
        {"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9", "PYTHONPATH": str(root), "POWERTOOLS_METRICS_DISABLED": "true"}
    )
    for handler, ok in (("pre_traffic_hook", True), ("post_traffic_hook", True), ("stream_handler", False)):
        env["_HANDLER"] = f"lambda_fn.handler.{handler}"
        done = subprocess.run(
            [sys.executable, "-c", "import lambda_fn.handler"], env=env, cwd=tmp_path, capture_output=True, text=True
        )
        assert (done.returncode == 0) == ok, (handler, done.stderr[-500:])
        if not ok:
            assert "MODEL_URI" in done.stderr
