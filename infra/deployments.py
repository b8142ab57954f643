"""Alias deployments: CodeDeploy shifts each `live` alias (canary, linear, all at once or blue/green), gated by
release checks before and after traffic, and rolls back on alarms.

Every deployment group has a pre-traffic hook (BeforeAllowTraffic: the new version is smoke-tested with the
release's example, `lambda_fn.release_checks`) and a post-traffic hook (AfterAllowTraffic: the release's alarms
and the alias's Errors). Both run the kit's image with their own least-privilege role: the pre-traffic hook may
invoke only the version being deployed and read only the release manifest; the post-traffic hook may read only
the release's alarms and the metrics; each may report only to its own deployment group (CDK's grant).
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.functions import ImageFunction, ServingFunction
from infra.nag import acknowledge, acknowledge_resource
from infra.settings import DeploySettings, FunctionSizing, Rollout
from infra.topology import POST_TRAFFIC_HANDLER, PRE_TRAFFIC_HANDLER
from lambda_fn.config import Env
from lambda_fn.release_checks import HookEnv

DEPLOYMENT_CONFIGS: dict[str, codedeploy.ILambdaDeploymentConfig] = {
    "canary": codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_5_MINUTES,
    "linear": codedeploy.LambdaDeploymentConfig.LINEAR_10_PERCENT_EVERY_1_MINUTE,
    "all-at-once": codedeploy.LambdaDeploymentConfig.ALL_AT_ONCE,
    # Blue/green: the new version is smoke-tested beside the old (pre-traffic hook), then takes all traffic at
    # once; the old version stays published, so a rollback is one alias update (CodeDeploy's, on alarm).
    "blue-green": codedeploy.LambdaDeploymentConfig.ALL_AT_ONCE,
}
HOOK_MEMORY_MB = 512
MANIFEST_FILE = "release.json"  # servingkit.publish.MANIFEST: beside the `model/` prefix it describes


def release_manifest(settings: DeploySettings, own_bucket: str) -> tuple[str, str] | None:
    """(bucket, key) of the release manifest publish wrote beside the model, or None if the model is not laid
    out by publish (`<prefix>/<name>/<sha256>/model`): the hook then checks the identity only."""
    model = settings.model
    base, _, last = model.key.rstrip("/").rpartition("/")
    if last != "model" or settings.model.sha256 not in base.split("/"):
        return None
    return model.bucket or own_bucket, f"{base}/{MANIFEST_FILE}"


class AliasDeployments(Construct):
    """One CodeDeploy application, one deployment group per function alias (the stack's construct id: "Release")."""

    def __init__(
        self, scope: Construct, construct_id: str, *, application_name: str, settings: DeploySettings, model_bucket: str
    ) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings
        self.rollout: Rollout = settings.rollout
        self.model_bucket = model_bucket
        self.application = codedeploy.LambdaApplication(self, "Application", application_name=application_name)
        self.hooks: dict[str, tuple[ImageFunction, ImageFunction]] = {}

    def add(self, name: str, fn: ServingFunction, alarms: list[cloudwatch.IAlarm]) -> codedeploy.LambdaDeploymentGroup:
        """Shift `fn`'s alias with the stage's rollout, gated by the release hooks; any of `alarms` firing during
        the shift (or found firing after it) rolls it back."""
        pre, post = self._pre_traffic(name, fn), self._post_traffic(name, fn, alarms)
        group = codedeploy.LambdaDeploymentGroup(
            self,
            name,
            application=self.application,
            alias=fn.alias,
            deployment_config=DEPLOYMENT_CONFIGS[self.rollout],
            alarms=alarms,
            pre_hook=pre.function,
            post_hook=post.function,
            auto_rollback=codedeploy.AutoRollbackConfig(
                failed_deployment=True, stopped_deployment=True, deployment_in_alarm=bool(alarms)
            ),
        )
        for hook in (pre, post):  # CDK grants CodeDeploy's role the hook's versions too (`<arn>:*`)
            acknowledge_resource(
                group.role,
                f"{hook.function.function_arn}:*",
                "CodeDeploy invokes this release hook (CDK's grant: the function and its versions), nothing else.",
            )
        post.role.add_to_policy(
            iam.PolicyStatement(actions=["codedeploy:GetDeployment"], resources=[group.deployment_group_arn])
        )
        # The alias update starts the deployment, and its UpdatePolicy names both hooks (a Ref, so CloudFormation
        # updates them first): the pre-traffic hook already names the new version when CodeDeploy calls it.
        self.hooks[name] = (pre, post)
        acknowledge(
            group,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSCodeDeployRoleForLambdaLimited]",
            "CodeDeploy's service role for Lambda: AWS's own least-privilege policy for alias shifting.",
        )
        return group

    def _hook(self, name: str, fn: ServingFunction, phase: str, handler: str, env: dict[str, str]) -> ImageFunction:
        s = self.settings
        function_name = f"{s.topology.prefix}-{name.removesuffix('Deployment').lower()}-{phase}-traffic"
        # The pre-traffic hook waits for the new version's cold start (model load) and its answer.
        timeout = min(900, int(fn.function.timeout.to_seconds()) + 60) if fn.function.timeout else 180
        return ImageFunction(
            self,
            f"{name}{phase.capitalize()}Traffic",
            function_name=function_name,
            description=f"CodeDeploy {phase}-traffic release check of {fn.alias.alias_name} (lambda_fn.release_checks)",
            handler=handler,
            architecture=s.architecture,
            base_image=s.base_image,
            sizing=FunctionSizing(HOOK_MEMORY_MB, timeout, reserved_concurrency=None),
            environment={**env, Env.POWERTOOLS_SERVICE_NAME: s.topology.prefix, Env.LOG_LEVEL: s.log_level},
            log_retention_days=s.log_retention_days,
        )

    def _pre_traffic(self, name: str, fn: ServingFunction) -> ImageFunction:
        s = self.settings
        version = fn.function.current_version
        env = {HookEnv.TARGET: version.function_arn, HookEnv.SHA256: s.model.sha256}
        if s.model_name:
            env[HookEnv.MODEL_NAME] = s.model_name
        if s.model_version:
            env[HookEnv.MODEL_VERSION] = s.model_version
        manifest = release_manifest(s, self.model_bucket)
        if manifest is not None:
            env[HookEnv.MANIFEST_URI] = f"s3://{manifest[0]}/{manifest[1]}"
        hook = self._hook(name, fn, "pre", PRE_TRAFFIC_HANDLER, env)
        # Only the version being deployed: never the alias (live traffic) nor another version.
        hook.role.add_to_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[version.function_arn])
        )
        if manifest is not None:
            arn = Stack.of(self).format_arn(
                service="s3", region="", account="", resource=manifest[0], resource_name=manifest[1]
            )
            hook.role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=[arn]))
        return hook

    def _post_traffic(self, name: str, fn: ServingFunction, alarms: list[cloudwatch.IAlarm]) -> ImageFunction:
        env = {
            HookEnv.FUNCTION_NAME: fn.function.function_name,
            HookEnv.ALIAS: fn.alias.alias_name,
            HookEnv.ALARMS: ",".join(a.alarm_name for a in alarms),
        }
        hook = self._hook(name, fn, "post", POST_TRAFFIC_HANDLER, env)
        if alarms:
            hook.role.add_to_policy(
                iam.PolicyStatement(actions=["cloudwatch:DescribeAlarms"], resources=[a.alarm_arn for a in alarms])
            )
        hook.role.add_to_policy(iam.PolicyStatement(actions=["cloudwatch:GetMetricData"], resources=["*"]))
        acknowledge(
            hook.role,
            "AwsSolutions-IAM5[Resource::*]",
            "cloudwatch:GetMetricData and X-Ray's PutTraceSegments support no resource-level permissions.",
        )
        return hook
