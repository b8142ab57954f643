"""Functions: one image, two serving functions (stream scorer, API), each with its own role, logs, sizing and `live`
alias; the monitor and the labels function (issue 14) run the same image as plain `ImageFunction`s
(`ImageFunction.of_stack`), invoked by their schedule and their stream."""

from __future__ import annotations

from typing import TypedDict, Unpack

from aws_cdk import CfnResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.image import image_code
from infra.nag import acknowledge
from infra.settings import LOG_RETENTION_DAYS, DeploySettings, FunctionSizing

LIVE_ALIAS = "live"

_R = logs.RetentionDays
# The CDK names each period (ONE_DAY...) rather than giving its days: paired with the validated list, in order.
RETENTION = dict(
    zip(
        LOG_RETENTION_DAYS,
        (
            _R.ONE_DAY, _R.THREE_DAYS, _R.FIVE_DAYS, _R.ONE_WEEK, _R.TWO_WEEKS, _R.ONE_MONTH, _R.TWO_MONTHS,
            _R.THREE_MONTHS, _R.FOUR_MONTHS, _R.FIVE_MONTHS, _R.SIX_MONTHS, _R.ONE_YEAR, _R.THIRTEEN_MONTHS,
            _R.EIGHTEEN_MONTHS, _R.TWO_YEARS, _R.THREE_YEARS, _R.FIVE_YEARS, _R.SIX_YEARS, _R.SEVEN_YEARS,
            _R.EIGHT_YEARS,
        ),
        strict=True,
    )
)  # fmt: skip


class ImageFunctionProps(TypedDict):
    """`ImageFunction`'s keyword arguments, declared once: `ServingFunction` takes and forwards the same."""

    function_name: str
    description: str
    handler: str
    architecture: str
    base_image: str | None
    sizing: FunctionSizing
    environment: dict[str, str]
    log_retention_days: int


class ImageFunction(Construct):
    """A function of the kit's container image (its CMD the handler) with a least-privilege role.

    The role gets no AWS managed policy: logging is granted on its own log group only, and every
    other permission is added by the stack (stream read, stream write, queue send, model read).
    """

    def __init__(self, scope: Construct, construct_id: str, **props: Unpack[ImageFunctionProps]) -> None:
        super().__init__(scope, construct_id)
        function_name, sizing, architecture = props["function_name"], props["sizing"], props["architecture"]
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/lambda/{function_name}",
            retention=RETENTION[props["log_retention_days"]],
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{function_name}: logs, traces and the grants its stack adds",
        )
        self.log_group.grant_write(self.role)
        self.function = lambda_.DockerImageFunction(
            self,
            "Function",
            function_name=function_name,
            description=props["description"],
            code=image_code(props["handler"], architecture, props["base_image"]),
            architecture=lambda_.Architecture.ARM_64 if architecture == "arm64" else lambda_.Architecture.X86_64,
            memory_size=sizing.memory_mb,
            timeout=Duration.seconds(sizing.timeout_seconds),
            reserved_concurrent_executions=sizing.reserved_concurrency,
            tracing=lambda_.Tracing.ACTIVE,
            environment=props["environment"],
            role=self.role,
            log_group=self.log_group,
        )
        # CDK makes the function depend on its role, which `Role: !GetAtt` already implies (cfn-lint W3005);
        # keep only the dependency on the role's policy (logs must be writable before the first invocation).
        cfn_function = self.function.node.default_child
        policy = self.role.node.try_find_child("DefaultPolicy")
        if isinstance(cfn_function, CfnResource) and policy is not None:
            stack = Stack.of(self)
            cfn_function.add_override(
                "DependsOn",
                [stack.get_logical_id(policy.node.default_child)],  # type: ignore[arg-type]
            )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions (tracing is on).",
        )

    @classmethod
    def of_stack(
        cls,
        scope: Construct,
        construct_id: str,
        *,
        settings: DeploySettings,
        name: str,
        description: str,
        handler: str,
        memory_mb: int,
        timeout_seconds: int,
        environment: dict[str, str],
    ) -> ImageFunction:
        """A helper function of the stack (`<prefix>-<name>`): the stack's image, architecture and log retention,
        no reserved concurrency (its trigger bounds it: a schedule, a stream's shards)."""
        return cls(
            scope,
            construct_id,
            function_name=f"{settings.topology.prefix}-{name}",
            description=description,
            handler=handler,
            architecture=settings.architecture,
            base_image=settings.base_image,
            sizing=FunctionSizing(memory_mb, timeout_seconds, reserved_concurrency=None),
            environment=environment,
            log_retention_days=settings.log_retention_days,
        )


class ServingFunction(ImageFunction):
    """An `ImageFunction` behind the `live` alias its callers (and CodeDeploy) use."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        provisioned_concurrency: int = 0,
        **props: Unpack[ImageFunctionProps],
    ) -> None:
        super().__init__(scope, construct_id, **props)
        # CodeDeploy shifts the alias between the old and the new version; callers only ever see `live`.
        self.alias = lambda_.Alias(
            self,
            "Live",
            alias_name=LIVE_ALIAS,
            version=self.function.current_version,
            provisioned_concurrent_executions=provisioned_concurrency or None,
        )
