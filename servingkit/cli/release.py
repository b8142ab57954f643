"""`servingkit release ...`: the model release path (run), its read-only context (context) and its wait (wait)."""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime

import click

from servingkit.cli.errors import CommandError

tracking_uri_option = click.option(
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    show_envvar=True,
    help="MLflow tracking/registry URI (default: $MLFLOW_TRACKING_URI).",
)
alias_option = click.option(
    "--alias", type=click.Choice(["champion", "challenger"]), default="champion", help="Registry alias to release."
)
stage_option = click.option(
    "--stage", default="dev", envvar="STAGE", show_envvar=True, help="Stage: ServingKit-<stage>."
)
timeout_option = click.option(
    "--timeout", type=click.FloatRange(min=1), default=3600.0, help="Seconds to wait for CodeDeploy's traffic shifts."
)


@click.group()
def release() -> None:
    """Release a registered model to a stage: alias → publish → cdk deploy → CodeDeploy shift → done or rolled back.

    AWS is reached with the standard configuration (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL); MLflow with
    --tracking-uri or MLFLOW_TRACKING_URI. docs/delivery.md describes the pipeline that runs these.
    """


@release.command("run")
@click.argument("name")
@alias_option
@click.option("--version", help="Point the alias at this registry version first (default: release it as it stands).")
@stage_option
@click.option("--bucket", envvar="MODEL_BUCKET", show_envvar=True, help="Model bucket (default: the stack's output).")
@click.option("--cdk", default="npx --no-install cdk", help="The CDK CLI command.")
@click.option("--cdk-args", envvar="CDK_ARGS", show_envvar=True, default="", help="More cdk deploy arguments (-c ...).")
@timeout_option
@click.option("--poll", type=click.FloatRange(min=0.1), default=15.0, help="Seconds between CodeDeploy polls.")
@tracking_uri_option
def run(
    name: str,
    alias: str,
    version: str | None,
    stage: str,
    bucket: str | None,
    cdk: str,
    cdk_args: str,
    timeout: float,
    poll: float,
    tracking_uri: str | None,
) -> None:
    """Release NAME@ALIAS to STAGE; exit 1 (the reason on one line) when it is refused or rolled back.

    With --version the alias moves first and moves back when the release fails.

    \b
      servingkit release run taxi-ride-duration --alias champion --version 4 --stage prod
    """
    from servingkit.release import ReleaseError, ReleaseRequest
    from servingkit.release import release as run_release

    req = ReleaseRequest(
        name=name,
        alias=alias,
        stage=stage,
        version=version,
        bucket=bucket,
        tracking_uri=tracking_uri,
        cdk=shlex.split(cdk),
        cdk_extra=shlex.split(cdk_args),
        timeout_s=timeout,
        poll_s=poll,
    )
    try:
        result = run_release(req, log=click.echo)
    except ReleaseError as exc:
        raise CommandError(str(exc)) from exc
    shifted = len(result.deployments)
    click.echo(
        f"released {name}@{alias} to {stage}: {shifted} traffic shift(s) succeeded"
        if shifted
        else f"released {name}@{alias} to {stage}: no function version changed, nothing shifted"
    )


@release.command("context")
@click.argument("name")
@alias_option
@click.option("--bucket", help="The stage's model bucket: the published key, in this bucket.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of -c arguments.")
@tracking_uri_option
def context(name: str, alias: str, bucket: str | None, as_json: bool, tracking_uri: str | None) -> None:
    """Print the CDK context of NAME@ALIAS as published (read-only: the pull request's cdk diff uses it).

    \b
      cdk diff ServingKit-dev $(servingkit release context taxi-ride-duration --bucket "$BUCKET")
    """
    from servingkit.release import ReleaseError, cdk_args, registry_context

    try:
        ctx = registry_context(name, alias, bucket=bucket, tracking_uri=tracking_uri)
    except ReleaseError as exc:
        raise CommandError(str(exc)) from exc
    click.echo(json.dumps(ctx) if as_json else shlex.join(cdk_args(ctx)))


@release.command("wait")
@click.option("--application", required=True, help="CodeDeploy application (the stack's DeploymentApplication).")
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S"]),
    required=True,
    help="UTC time the deploy started: deployments created since then are waited for.",
)
@timeout_option
@click.option("--poll", type=click.FloatRange(min=0.1), default=15.0, help="Seconds between polls.")
def wait(application: str, since: datetime, timeout: float, poll: float) -> None:
    """Wait for the CodeDeploy deployments of APPLICATION since --since; exit 1 when one rolled back."""
    import boto3

    from servingkit.release import ReleaseError, wait_for_deployments

    try:
        done = wait_for_deployments(
            boto3.client("codedeploy"), application, since.replace(tzinfo=UTC), timeout_s=timeout, poll_s=poll
        )
    except ReleaseError as exc:
        raise CommandError(str(exc)) from exc
    for d in done:
        click.echo(f"{d.group}: deployment {d.deployment_id} {d.status}")
    if not done:
        click.echo("no deployment since then: no function version changed")
