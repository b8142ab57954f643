"""The release's wait on CodeDeploy: done, rolled back (with CodeDeploy's reason), nothing shifted, or out of time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from servingkit.release import ReleaseError, cdk_args, wait_for_deployments

SINCE = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class FakeCodeDeploy:
    """CodeDeploy's ListDeploymentGroups / ListDeployments / GetDeployment shapes; statuses move on each poll."""

    def __init__(self, timelines: dict[str, list[dict[str, Any]]], groups: dict[str, list[str]]) -> None:
        self.timelines = timelines  # deployment id -> deploymentInfo per poll (the last one repeats)
        self.groups = groups  # group -> deployment ids created since SINCE
        self.polls = 0
        self.ranges: list[Any] = []

    def list_deployment_groups(self, *, applicationName: str) -> dict[str, Any]:  # boto3 names its parameters so
        assert applicationName == "serving-dev"
        return {"applicationName": applicationName, "deploymentGroups": list(self.groups)}

    def get_paginator(self, name: str) -> FakeCodeDeploy:
        assert name == "list_deployments"
        return self

    def paginate(self, **kwargs: Any) -> list[dict[str, Any]]:
        self.ranges.append(kwargs["createTimeRange"])
        return [{"deployments": self.groups[kwargs["deploymentGroupName"]]}]

    def get_deployment(self, *, deploymentId: str) -> dict[str, Any]:
        timeline = self.timelines[deploymentId]
        return {"deploymentInfo": {"deploymentId": deploymentId, **timeline[min(self.polls, len(timeline) - 1)]}}

    def sleep(self, seconds: float) -> None:
        assert seconds == 5
        self.polls += 1


def test_waits_until_both_aliases_have_shifted() -> None:
    cd = FakeCodeDeploy(
        {
            "d-scorer": [{"status": "InProgress"}, {"status": "InProgress"}, {"status": "Succeeded"}],
            "d-api": [{"status": "Created"}, {"status": "Succeeded"}],
        },
        {"ScorerDeployment": ["d-scorer"], "ApiDeployment": ["d-api"]},
    )
    done = wait_for_deployments(cd, "serving-dev", SINCE, poll_s=5, sleep=cd.sleep)
    assert [(d.group, d.deployment_id, d.status) for d in done] == [
        ("ScorerDeployment", "d-scorer", "Succeeded"),
        ("ApiDeployment", "d-api", "Succeeded"),
    ]
    assert cd.polls == 2 and all(r == {"start": SINCE} for r in cd.ranges)


def test_a_rollback_fails_with_codedeploys_reason() -> None:
    hook = "The deployment failed because the BeforeAllowTraffic hook reported Failed: sha256 mismatch"
    cd = FakeCodeDeploy(
        {
            "d-scorer": [
                {"status": "InProgress"},
                {
                    "status": "Failed",
                    "errorInformation": {"code": "HOOK_EXECUTION_FAILURE", "message": hook},
                    "rollbackInfo": {"rollbackMessage": "Rolled back to version 7"},
                },
            ],
            "d-api": [{"status": "InProgress"}],
        },
        {"ScorerDeployment": ["d-scorer"], "ApiDeployment": ["d-api"]},
    )
    with pytest.raises(ReleaseError) as err:
        wait_for_deployments(cd, "serving-dev", SINCE, poll_s=5, sleep=cd.sleep)
    message = str(err.value)
    assert message.startswith("rolled back: ScorerDeployment deployment d-scorer Failed: ")
    assert hook in message and "Rolled back to version 7" in message and "d-api" not in message
    assert "\n" not in message


def test_a_stopped_deployment_is_a_rollback_too() -> None:
    cd = FakeCodeDeploy({"d": [{"status": "Stopped"}]}, {"ApiDeployment": ["d"]})
    with pytest.raises(ReleaseError, match="d Stopped: no reason given"):
        wait_for_deployments(cd, "serving-dev", SINCE, poll_s=5, sleep=cd.sleep)


def test_no_deployment_means_nothing_shifted() -> None:
    cd = FakeCodeDeploy({}, {"ScorerDeployment": [], "ApiDeployment": []})
    assert wait_for_deployments(cd, "serving-dev", SINCE, poll_s=5, sleep=cd.sleep) == []
    assert cd.polls == 0


def test_the_wait_is_bounded() -> None:
    cd = FakeCodeDeploy({"d": [{"status": "InProgress"}]}, {"ScorerDeployment": ["d"]})
    now = [0.0]

    def sleep(seconds: float) -> None:
        cd.sleep(seconds)
        now[0] += seconds

    with pytest.raises(ReleaseError, match=r"still running after 30 s: ScorerDeployment d InProgress"):
        wait_for_deployments(cd, "serving-dev", SINCE, timeout_s=30, poll_s=5, sleep=sleep, clock=lambda: now[0])
    assert cd.polls == 6


def test_cdk_args_are_one_argv_element_per_value() -> None:
    assert cdk_args({"model_uri": "s3://b/models/m/ab/model", "model_name": "taxi ride"}) == [
        "-c",
        "model_uri=s3://b/models/m/ab/model",
        "-c",
        "model_name=taxi ride",
    ]
