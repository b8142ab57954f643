"""Release hooks in the template: both aliases, every rollout strategy, least privilege, model-only releases."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.topology import API_HANDLER, POST_TRAFFIC_HANDLER, PRE_TRAFFIC_HANDLER, STREAM_HANDLER
from lambda_fn.release_checks import HookEnv
from tests.infra.synth import OTHER_SHA, SHA, Synth

STRATEGIES = [
    ("default", "CodeDeployDefault.LambdaCanary10Percent5Minutes"),
    ("provisioned", "CodeDeployDefault.LambdaLinear10PercentEvery1Minute"),
    ("rollout", "CodeDeployDefault.LambdaAllAtOnce"),
    ("bluegreen", "CodeDeployDefault.LambdaAllAtOnce"),
]


def _functions(s: Synth) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in s.resources("AWS::Lambda::Function").items()}


def _serving(s: Synth, handler: str) -> str:
    (logical_id,) = [k for k, p in _functions(s).items() if p["ImageConfig"]["Command"] == [handler]]
    return logical_id


def _version_of(s: Synth, function_id: str) -> str:
    (version,) = [
        k
        for k, v in s.resources("AWS::Lambda::Version").items()
        if v["Properties"]["FunctionName"] == {"Ref": function_id}
    ]
    return version


def _statements(s: Synth, role_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for policy in s.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def _actions(st: dict[str, Any]) -> set[str]:
    return {st["Action"]} if isinstance(st["Action"], str) else set(st["Action"])


@pytest.mark.parametrize(("variant", "config"), STRATEGIES)
def test_both_aliases_are_gated_by_pre_and_post_traffic_hooks(
    variant: str, config: str, request: pytest.FixtureRequest
) -> None:
    s: Synth = request.getfixturevalue(variant)
    fns = _functions(s)
    groups = s.resources("AWS::CodeDeploy::DeploymentGroup")
    aliases = s.resources("AWS::Lambda::Alias")
    assert len(groups) == 2 and len(aliases) == 2
    for handler in (STREAM_HANDLER, API_HANDLER):
        serving = _serving(s, handler)
        (alias_id,) = [k for k, a in aliases.items() if a["Properties"]["FunctionName"] == {"Ref": serving}]
        update = aliases[alias_id]["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
        assert groups[update["DeploymentGroupName"]["Ref"]]["Properties"]["DeploymentConfigName"] == config
        pre, post = update["BeforeAllowTrafficHook"]["Ref"], update["AfterAllowTrafficHook"]["Ref"]
        assert fns[pre]["ImageConfig"]["Command"] == [PRE_TRAFFIC_HANDLER]
        assert fns[post]["ImageConfig"]["Command"] == [POST_TRAFFIC_HANDLER]
        assert fns[pre]["Code"] == fns[post]["Code"] == fns[serving]["Code"]  # the same image
        # The hooks are updated before the alias (its UpdatePolicy's Refs order them; cfn-lint W3005 agrees):
        # the pre-traffic hook names the version being deployed.
        assert "DependsOn" not in aliases[alias_id] or not {pre, post} & set(aliases[alias_id]["DependsOn"])
        pre_env = fns[pre]["Environment"]["Variables"]
        assert pre_env[HookEnv.TARGET] == {"Ref": _version_of(s, serving)}
        assert pre_env[HookEnv.SHA256] == s.context["model_sha256"]
        post_env = fns[post]["Environment"]["Variables"]
        assert post_env[HookEnv.FUNCTION_NAME] == {"Ref": serving} and post_env[HookEnv.ALIAS] == "live"
        # The pre-traffic hook waits for the new version's cold start and answer.
        assert fns[pre]["Timeout"] >= fns[serving]["Timeout"] + 60


def _hook_roles(s: Synth) -> dict[str, str]:
    """Role logical id of each hook function, by `<logical id of the function>`."""
    return {
        k: p["Role"]["Fn::GetAtt"][0]
        for k, p in _functions(s).items()
        if p["ImageConfig"]["Command"][0] in (PRE_TRAFFIC_HANDLER, POST_TRAFFIC_HANDLER)
    }


def test_pre_traffic_hook_may_invoke_only_the_new_version_and_read_only_the_manifest(bluegreen: Synth) -> None:
    fns = _functions(bluegreen)
    for fn_id, role in _hook_roles(bluegreen).items():
        statements = _statements(bluegreen, role)
        allowed = set().union(*(_actions(st) for st in statements))
        if fns[fn_id]["ImageConfig"]["Command"] == [PRE_TRAFFIC_HANDLER]:
            (invoke,) = [st for st in statements if "lambda:InvokeFunction" in _actions(st)]
            assert invoke["Resource"] == fns[fn_id]["Environment"]["Variables"][HookEnv.TARGET]  # a version, not live
            (read,) = [st for st in statements if "s3:GetObject" in _actions(st)]
            assert json.dumps(read["Resource"]).endswith(f'models/taxi/{SHA}/release.json"]]}}')
            assert fns[fn_id]["Environment"]["Variables"][HookEnv.MANIFEST_URI] == (
                f"s3://example-models/models/taxi/{SHA}/release.json"
            )
            assert {"cloudwatch:GetMetricData", "cloudwatch:DescribeAlarms"}.isdisjoint(allowed)
        else:
            assert "lambda:InvokeFunction" not in allowed and "s3:GetObject" not in allowed
            (describe,) = [st for st in statements if "cloudwatch:DescribeAlarms" in _actions(st)]
            assert "Fn::GetAtt" in describe["Resource"]  # the release's alarm, not every alarm
        (report,) = [st for st in statements if "codedeploy:PutLifecycleEventHookExecutionStatus" in _actions(st)]
        assert ":deploymentgroup:" in json.dumps(report["Resource"])
        assert not any(a.endswith(":*") or a == "*" for a in allowed)


def test_without_a_published_layout_the_hook_checks_the_identity_only(default: Synth) -> None:
    fns = _functions(default)
    for fn_id, role in _hook_roles(default).items():
        assert HookEnv.MANIFEST_URI not in fns[fn_id]["Environment"]["Variables"]
        assert not [st for st in _statements(default, role) if "s3:GetObject" in _actions(st)]


def test_the_post_traffic_hook_watches_the_rollback_alarms(default: Synth, provisioned: Synth) -> None:
    for s, watched in ((default, 1), (provisioned, 0)):  # provisioned turns alarms off
        for fn_id in _hook_roles(s):
            p = _functions(s)[fn_id]
            if p["ImageConfig"]["Command"] == [POST_TRAFFIC_HANDLER]:
                names = p["Environment"]["Variables"][HookEnv.ALARMS]
                assert (names != "") == bool(watched), (s.name, names)


def test_a_model_only_release_is_a_new_version_through_the_same_hooks(bluegreen: Synth, bluegreen_next: Synth) -> None:
    for handler in (STREAM_HANDLER, API_HANDLER):
        first, second = _serving(bluegreen, handler), _serving(bluegreen_next, handler)
        assert first == second  # the same function ...
        assert _version_of(bluegreen, first) != _version_of(bluegreen_next, second)  # ... a new version
    hooks = sorted(_hook_roles(bluegreen_next))
    assert hooks == sorted(_hook_roles(bluegreen))
    for fn_id in hooks:
        env = _functions(bluegreen_next)[fn_id]["Environment"]["Variables"]
        if HookEnv.SHA256 in env:
            assert env[HookEnv.SHA256] == OTHER_SHA and env[HookEnv.MODEL_VERSION] == "4"


def test_deployment_groups_are_stack_outputs(default: Synth) -> None:
    outputs = default.template["Outputs"]
    groups = default.resources("AWS::CodeDeploy::DeploymentGroup")
    assert {outputs["ScorerDeploymentGroup"]["Value"]["Ref"], outputs["ApiDeploymentGroup"]["Value"]["Ref"]} == set(
        groups
    )
    assert outputs["DeploymentApplication"]["Value"]["Ref"] in default.resources("AWS::CodeDeploy::Application")
