"""cdk-nag acknowledgments, always next to the construct they concern and always with a reason."""

from __future__ import annotations

from typing import Any

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Record that `rule` (e.g. `AwsSolutions-S1`, or `AwsSolutions-IAM5[Resource::...]`) is accepted here, and why."""
    Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))


def acknowledge_resource(scope: IConstruct, arn: str, reason: str) -> None:
    """Accept a wildcard resource (`AwsSolutions-IAM5`) in a policy of `scope`, named as cdk-nag names it."""
    acknowledge(scope, f"AwsSolutions-IAM5[Resource::{nag_resource(Stack.of(scope), arn)}]", reason)


def nag_resource(stack: Stack, arn: str) -> str:
    """An ARN as cdk-nag names it in a finding id: Ref -> <Name>, GetAtt -> <Name.Attr>, Join concatenated."""

    def render(node: Any) -> str:
        if isinstance(node, str):
            return node
        if isinstance(node, dict) and "Ref" in node:
            return f"<{node['Ref']}>"
        if isinstance(node, dict) and "Fn::GetAtt" in node:
            return "<{}.{}>".format(*node["Fn::GetAtt"])
        if isinstance(node, dict) and "Fn::Join" in node:
            sep, parts = node["Fn::Join"]
            return str(sep).join(render(p) for p in parts)
        return str(node)

    return render(stack.resolve(arn))
