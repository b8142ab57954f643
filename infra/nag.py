"""cdk-nag acknowledgments, always next to the construct they concern and always with a reason."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Record that `rule` (e.g. `AwsSolutions-S1`, or `AwsSolutions-IAM5[Resource::...]`) is accepted here, and why."""
    Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))
