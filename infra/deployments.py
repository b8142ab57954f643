"""Alias deployments: CodeDeploy shifts each `live` alias (canary, linear or all at once) and rolls back on alarms."""

from __future__ import annotations

from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.nag import acknowledge
from infra.settings import Rollout

DEPLOYMENT_CONFIGS: dict[str, codedeploy.ILambdaDeploymentConfig] = {
    "canary": codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_5_MINUTES,
    "linear": codedeploy.LambdaDeploymentConfig.LINEAR_10_PERCENT_EVERY_1_MINUTE,
    "all-at-once": codedeploy.LambdaDeploymentConfig.ALL_AT_ONCE,
}


class AliasDeployments(Construct):
    """One CodeDeploy application, one deployment group per function alias (the stack's construct id: "Release")."""

    def __init__(self, scope: Construct, construct_id: str, *, application_name: str, rollout: Rollout) -> None:
        super().__init__(scope, construct_id)
        self.rollout = rollout
        self.application = codedeploy.LambdaApplication(self, "Application", application_name=application_name)

    def add(self, name: str, alias: lambda_.Alias, alarms: list[cloudwatch.IAlarm]) -> codedeploy.LambdaDeploymentGroup:
        """Shift `alias` with the stage's rollout; any of `alarms` firing during the shift rolls it back."""
        group = codedeploy.LambdaDeploymentGroup(
            self,
            name,
            application=self.application,
            alias=alias,
            deployment_config=DEPLOYMENT_CONFIGS[self.rollout],
            alarms=alarms,
            auto_rollback=codedeploy.AutoRollbackConfig(
                failed_deployment=True, stopped_deployment=True, deployment_in_alarm=bool(alarms)
            ),
        )
        acknowledge(
            group,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSCodeDeployRoleForLambdaLimited]",
            "CodeDeploy's service role for Lambda: AWS's own least-privilege policy for alias shifting.",
        )
        return group
