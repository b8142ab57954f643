"""The delivery pipeline's AWS side: GitHub's OIDC provider and the two roles the workflows assume (no keys).

`cdk deploy ServingKit-Delivery -c github_repo=owner/name` (app.py builds only this stack when `github_repo`
is given), once, with your own credentials. The roles can do almost nothing themselves: CloudFormation does the
work through the CDK bootstrap roles, which these roles may only assume.

- the deploy role (`.github/workflows/deploy.yml`, `release-model.yml`): trusted for jobs on `main` and jobs in
  the GitHub environments `dev` and `prod`; assumes the bootstrap roles, publishes models under the model
  bucket's `models/` prefix (what `servingkit publish` reads and writes), reads the serving stacks' outputs and
  their CodeDeploy deployments (the release waits for the traffic shift).
- the diff role (`.github/workflows/ci.yml`): trusted for pull requests of the repository; may assume only the
  bootstrap lookup role (read-only) that `cdk diff --method template` reads the deployed template with, and read
  the serving stacks' outputs (the stage's model bucket names the diff's model).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from aws_cdk import App, CfnOutput, DefaultStackSynthesizer, Duration, Environment, Stack, Tags, Validations
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.nag import acknowledge_resource

GITHUB_ISSUER = "token.actions.githubusercontent.com"
AUDIENCE = "sts.amazonaws.com"
STACK_NAME = "ServingKit-Delivery"
DEFAULT_QUALIFIER = "hnb659fds"
BOOTSTRAP_ROLES = ("deploy", "file-publishing", "image-publishing", "lookup")
ENVIRONMENTS = ("dev", "prod")


class DeliveryContext:
    """Context keys of the delivery stack (`-c key=value`)."""

    GITHUB_REPO = "github_repo"  # owner/name: the only repository whose workflows may assume the roles
    OIDC_PROVIDER_ARN = "github_oidc_provider_arn"  # import the account's existing provider instead of creating it
    QUALIFIER = "bootstrap_qualifier"  # `cdk bootstrap --qualifier` (default hnb659fds)
    MODEL_BUCKET = "model_bucket"  # the serving stacks' ModelBucketName (default: the kit's generated names)
    STACK_PREFIX = "serving_stack_prefix"  # CloudFormation stacks the release reads (default ServingKit-)
    APP_PREFIX = "deployment_app_prefix"  # CodeDeploy applications the release waits on (default serving-)


_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$")
_NAME = re.compile(r"^[a-z0-9.-]{3,63}$")
_STACKS_REASON = "Stack ARNs end in an id CloudFormation generates; read-only, and only the serving stacks."


class DeliveryConfigError(ValueError):
    """A delivery context value a person got wrong: one line naming the key."""


def github_subjects(repo: str) -> list[str]:
    """The OIDC `sub` claims trusted by the deploy role: pushes to main, and jobs in the dev/prod environments."""
    return [f"repo:{repo}:ref:refs/heads/main", *(f"repo:{repo}:environment:{env}" for env in ENVIRONMENTS)]


class DeliveryStack(Stack):
    """GitHub OIDC federation and the least-privilege roles of the delivery workflows."""

    def __init__(self, scope: Construct, construct_id: str, *, context: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        Tags.of(self).add("project", "serverless-model-serving-kit")
        repo = _repo(context.get(DeliveryContext.GITHUB_REPO))
        qualifier = str(context.get(DeliveryContext.QUALIFIER) or DEFAULT_QUALIFIER)
        if not re.fullmatch(r"[a-z0-9]{1,10}", qualifier):
            raise DeliveryConfigError(
                f"context {DeliveryContext.QUALIFIER}={qualifier!r}: 1-10 lowercase letters/digits"
            )
        provider_arn = self._provider(context.get(DeliveryContext.OIDC_PROVIDER_ARN))

        deploy = self._role(
            "DeployRole",
            provider_arn,
            subjects=github_subjects(repo),
            description=f"GitHub Actions of {repo} (main, environments dev/prod): CDK deploys and model releases",
        )
        for statement, wildcards in self._deploy_statements(context, qualifier):
            deploy.add_to_policy(statement)
            for arn, reason in wildcards.items():
                acknowledge_resource(deploy, arn, reason)
        diff = self._role(
            "DiffRole",
            provider_arn,
            subjects=[f"repo:{repo}:pull_request"],
            description=f"GitHub Actions of {repo} (pull requests): cdk diff through the read-only lookup role",
        )
        diff.add_to_policy(self._assume([self._bootstrap_role(qualifier, "lookup")], "AssumeCdkLookupRole"))
        # The diff's model context names the stage's bucket: the stack's ModelBucketName output.
        diff.add_to_policy(self._read_stacks(context))
        acknowledge_resource(diff, self._stacks_arn(context), _STACKS_REASON)
        CfnOutput(self, "DeployRoleArn", value=deploy.role_arn, description="repository variable AWS_DEPLOY_ROLE_ARN")
        CfnOutput(self, "DiffRoleArn", value=diff.role_arn, description="repository variable AWS_DIFF_ROLE_ARN")
        CfnOutput(self, "GitHubOidcProviderArn", value=provider_arn)

    def _provider(self, arn: object) -> str:
        """The account's GitHub OIDC provider: imported by ARN (one per account and URL), else created here."""
        if arn:
            if not re.fullmatch(rf"arn:aws[a-z-]*:iam::\d{{12}}:oidc-provider/{re.escape(GITHUB_ISSUER)}", str(arn)):
                raise DeliveryConfigError(
                    f"context {DeliveryContext.OIDC_PROVIDER_ARN}={arn!r}: expected "
                    f"arn:aws:iam::<account>:oidc-provider/{GITHUB_ISSUER}"
                )
            return str(arn)
        # The native (CloudFormation) provider: no custom resource, no Lambda. IAM fetches GitHub's certificate
        # chain itself and no longer needs thumbprints for it.
        provider = iam.OidcProviderNative(self, "GitHubOidc", url=f"https://{GITHUB_ISSUER}", client_ids=[AUDIENCE])
        return provider.oidc_provider_arn

    def _role(self, construct_id: str, provider_arn: str, *, subjects: list[str], description: str) -> iam.Role:
        principal = iam.WebIdentityPrincipal(
            provider_arn,
            conditions={
                "StringEquals": {f"{GITHUB_ISSUER}:aud": AUDIENCE, f"{GITHUB_ISSUER}:sub": subjects},
            },
        )
        return iam.Role(
            self, construct_id, assumed_by=principal, description=description, max_session_duration=Duration.hours(2)
        )

    def _bootstrap_role(self, qualifier: str, kind: str) -> str:
        return f"arn:{self.partition}:iam::{self.account}:role/cdk-{qualifier}-{kind}-role-{self.account}-{self.region}"

    def _stacks_arn(self, context: Mapping[str, Any]) -> str:
        stacks = str(context.get(DeliveryContext.STACK_PREFIX) or "ServingKit-")
        return f"arn:{self.partition}:cloudformation:{self.region}:{self.account}:stack/{stacks}*/*"

    def _read_stacks(self, context: Mapping[str, Any]) -> iam.PolicyStatement:
        """The serving stacks' outputs (model bucket, CodeDeploy application): read-only."""
        return iam.PolicyStatement(
            sid="ReadServingStacks", actions=["cloudformation:DescribeStacks"], resources=[self._stacks_arn(context)]
        )

    @staticmethod
    def _assume(role_arns: list[str], sid: str) -> iam.PolicyStatement:
        return iam.PolicyStatement(sid=sid, actions=["sts:AssumeRole", "sts:TagSession"], resources=role_arns)

    def _deploy_statements(
        self, context: Mapping[str, Any], qualifier: str
    ) -> list[tuple[iam.PolicyStatement, dict[str, str]]]:
        """Assume the bootstrap roles; publish under models/; read the stacks' outputs and CodeDeploy deployments.

        Each statement comes with its wildcard resources and the reason each is acceptable (cdk-nag IAM5)."""
        bucket = context.get(DeliveryContext.MODEL_BUCKET)
        if bucket is not None and not _NAME.fullmatch(str(bucket)):
            raise DeliveryConfigError(f"context {DeliveryContext.MODEL_BUCKET}={bucket!r}: not an S3 bucket name")
        # Without a name: the buckets the serving stacks create (CloudFormation names them <stack>-modelstorebucket...).
        bucket_arn = f"arn:{self.partition}:s3:::{bucket or 'servingkit-*-modelstorebucket*'}"
        generated = {} if bucket else {bucket_arn: "The serving stacks' model buckets, named by CloudFormation."}
        apps = str(context.get(DeliveryContext.APP_PREFIX) or "serving-")
        region_account = f"{self.region}:{self.account}"
        models = f"{bucket_arn}/models/*"
        app_arn = f"arn:{self.partition}:codedeploy:{region_account}:application:{apps}*"
        group_arn = f"arn:{self.partition}:codedeploy:{region_account}:deploymentgroup:{apps}*/*"
        return [
            (
                self._assume(
                    [self._bootstrap_role(qualifier, kind) for kind in BOOTSTRAP_ROLES], "AssumeCdkBootstrapRoles"
                ),
                {},
            ),
            # servingkit publish: read back (verify, the previous manifest) and write the release's files.
            (
                iam.PolicyStatement(sid="PublishModels", actions=["s3:GetObject", "s3:PutObject"], resources=[models]),
                {
                    models: "servingkit publish writes content-addressed keys under models/<name>/<sha256>/ "
                    "(unknown before publishing) and nothing outside models/.",
                    **generated,
                },
            ),
            # ... and lists the release's prefix (existing files, conflicts) only.
            (
                iam.PolicyStatement(
                    sid="ListModels",
                    actions=["s3:ListBucket"],
                    resources=[bucket_arn],
                    conditions={"StringLike": {"s3:prefix": ["models/*"]}},
                ),
                generated,
            ),
            (self._read_stacks(context), {self._stacks_arn(context): _STACKS_REASON}),
            (
                iam.PolicyStatement(
                    sid="WatchReleases",
                    actions=[
                        "codedeploy:ListDeployments",
                        "codedeploy:GetDeployment",
                        "codedeploy:ListDeploymentGroups",
                    ],
                    resources=[app_arn, group_arn],
                ),
                {
                    app_arn: "Read-only: the serving stacks' CodeDeploy applications (serving-<stage>).",
                    group_arn: "Read-only: their deployment groups, named by CDK; the release waits on their "
                    "deployments.",
                },
            ),
        ]


def _repo(value: object) -> str:
    if not isinstance(value, str) or not _REPO.fullmatch(value):
        raise DeliveryConfigError(
            f"context {DeliveryContext.GITHUB_REPO}={value!r}: expected owner/name of a GitHub repository"
        )
    return value


def delivery_app(context: Mapping[str, Any] | None = None, *, outdir: str | None = None) -> App | None:
    """The delivery stack's app when `github_repo` is in the context (CLI or `context`); None otherwise."""
    app = App(context=dict(context or {}), outdir=outdir)
    keys = [v for k, v in vars(DeliveryContext).items() if not k.startswith("_")]
    ctx = {key: app.node.try_get_context(key) for key in keys}
    if not ctx[DeliveryContext.GITHUB_REPO]:
        return None
    qualifier = ctx[DeliveryContext.QUALIFIER]
    DeliveryStack(
        app,
        STACK_NAME,
        context=ctx,
        description="Serverless model serving kit: GitHub OIDC federation and the delivery workflows' roles",
        env=_environment(),
        # A custom `cdk bootstrap --qualifier`: this stack's own assets and version check use it as well.
        synthesizer=DefaultStackSynthesizer(qualifier=str(qualifier)) if qualifier else None,
    )
    from cdk_nag import AwsSolutionsChecks

    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True))
    return app


def _environment() -> Environment | None:
    """Account/region from the CLI's profile when deploying; environment-agnostic otherwise (synth offline)."""
    account, region = os.environ.get("CDK_DEFAULT_ACCOUNT"), os.environ.get("CDK_DEFAULT_REGION")
    return Environment(account=account, region=region) if account and region else None
