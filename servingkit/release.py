"""The model release path as one call: registry alias → publish → `cdk deploy` → CodeDeploy shift → done or rolled back.

`release()` is what `servingkit release run` and `.github/workflows/release-model.yml` do:

1. optionally point the registry alias (champion / challenger) at a version (`servingkit.publish.promote`);
2. publish `models:/<name>@<alias>` into the stage's model bucket (`servingkit.publish.publish`: content-addressed,
   idempotent, so a code-only deploy re-publishes nothing);
3. `cdk deploy ServingKit-<stage>` with the release's context (a new model is a new function version of both
   functions; CloudFormation hands the `live` aliases to CodeDeploy and waits for the shift it started);
4. wait, bounded, for every CodeDeploy deployment of the stage's application created since step 3 began, and
   fail on one that failed or was stopped (CodeDeploy rolled the alias back);
5. on failure, point the alias back at the version it named before step 1, so the registry says what serves.

`registry_context()` reads the same context without writing anything (the pull-request diff): `publish` tags
the registry version with where it put the artifact.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from infra.topology import Ctx

TAG_URI = "servingkit.model_uri"  # set on the registry version by servingkit.publish (tag_registry)
TAG_SHA = "servingkit.sha256"
DONE = {"Succeeded"}
ROLLED_BACK = {"Failed", "Stopped"}
DEFAULT_TIMEOUT_S = 3600.0
DEFAULT_POLL_S = 15.0


class ReleaseError(RuntimeError):
    """A release that did not complete: the reason on one line (the CLI's exit status 1)."""


@dataclass(frozen=True)
class Deployment:
    """One CodeDeploy deployment of a `live` alias and how it ended."""

    group: str
    deployment_id: str
    status: str
    detail: str = ""


@dataclass
class ReleaseResult:
    stage: str
    context: dict[str, str]
    deployments: list[Deployment] = field(default_factory=list)
    promoted: dict[str, tuple[str | None, str]] = field(default_factory=dict)


def stack_name(stage: str) -> str:
    """The serving stack of a stage (infra.stack.build_app names it so)."""
    return f"ServingKit-{stage}"


def registry_context(
    name: str, alias: str, *, bucket: str | None = None, tracking_uri: str | None = None, client: Any | None = None
) -> dict[str, str]:
    """The CDK context of the version `name@alias` as `servingkit publish` recorded it on the registry version.

    The key is content-addressed, the same in every stage's bucket: `bucket` swaps in the stage's."""
    if client is None:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        version = client.get_model_version_by_alias(name, alias)
    except Exception as exc:  # noqa: BLE001 - MLflow raises its own types for every lookup failure
        raise ReleaseError(f"cannot read {name}@{alias} from the registry: {exc}") from None
    tags = dict(version.tags or {})
    uri, sha = tags.get(TAG_URI), tags.get(TAG_SHA)
    if not uri or not sha:
        raise ReleaseError(
            f"{name}@{alias} (version {version.version}) was never published: run "
            f"servingkit publish 'models:/{name}@{alias}' --bucket ... first"
        )
    if bucket:
        parsed = urlparse(uri)
        uri = f"s3://{bucket}{parsed.path}"
    return {Ctx.MODEL_URI: uri, Ctx.MODEL_SHA256: sha, Ctx.MODEL_NAME: name, Ctx.MODEL_VERSION: str(version.version)}


def cdk_args(context: Mapping[str, str]) -> list[str]:
    """`-c key=value` for each context entry (one argv element each: no shell quoting needed)."""
    return [arg for key, value in context.items() for arg in ("-c", f"{key}={value}")]


def stack_outputs(stage: str, cfn: Any | None = None) -> dict[str, str]:
    """The serving stack's outputs (ModelBucketName, DeploymentApplication, ...); {} when it does not exist yet."""
    from botocore.exceptions import ClientError

    cfn = cfn or _client("cloudformation")
    try:
        (stack,) = cfn.describe_stacks(StackName=stack_name(stage))["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return {}
        raise ReleaseError(f"cannot read stack {stack_name(stage)}: {exc}") from None
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def deployments_since(codedeploy: Any, application: str, since: datetime) -> list[tuple[str, str]]:
    """(group, deployment id) of every deployment of `application` created at or after `since`."""
    found: list[tuple[str, str]] = []
    groups = codedeploy.list_deployment_groups(applicationName=application).get("deploymentGroups", [])
    for group in groups:
        pages = codedeploy.get_paginator("list_deployments").paginate(
            applicationName=application, deploymentGroupName=group, createTimeRange={"start": since}
        )
        found += [(group, d) for page in pages for d in page.get("deployments", [])]
    return found


def _outcome(codedeploy: Any, group: str, deployment_id: str) -> Deployment:
    info = codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
    error = (info.get("errorInformation") or {}).get("message", "")
    rollback = (info.get("rollbackInfo") or {}).get("rollbackMessage", "")
    return Deployment(group, deployment_id, info["status"], " ".join(x for x in (error, rollback) if x))


def wait_for_deployments(
    codedeploy: Any,
    application: str,
    since: datetime,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    poll_s: float = DEFAULT_POLL_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[Deployment]:
    """Poll until every deployment since `since` has ended; raise ReleaseError on a rollback or at the bound.

    No deployment at all means no function version changed (same code, same model): nothing shifted."""
    deadline = clock() + timeout_s
    while True:
        outcomes = [_outcome(codedeploy, g, d) for g, d in deployments_since(codedeploy, application, since)]
        failed = [o for o in outcomes if o.status in ROLLED_BACK]
        if failed:
            raise ReleaseError(
                "rolled back: "
                + "; ".join(
                    f"{o.group} deployment {o.deployment_id} {o.status}: {o.detail or 'no reason given'}"
                    for o in failed
                )
            )
        if all(o.status in DONE for o in outcomes):
            return outcomes
        if clock() >= deadline:
            pending = ", ".join(f"{o.group} {o.deployment_id} {o.status}" for o in outcomes if o.status not in DONE)
            raise ReleaseError(f"deployments still running after {timeout_s:.0f} s: {pending}")
        sleep(poll_s)


@dataclass(frozen=True)
class ReleaseRequest:
    """What to release where; `version` None releases the alias as it stands (a code deploy)."""

    name: str
    alias: str
    stage: str
    version: str | None = None
    bucket: str | None = None
    tracking_uri: str | None = None
    cdk: Sequence[str] = ("npx", "--no-install", "cdk")
    cdk_extra: Sequence[str] = ()
    timeout_s: float = DEFAULT_TIMEOUT_S
    poll_s: float = DEFAULT_POLL_S


def release(
    req: ReleaseRequest, *, log: Callable[[str], None] = print, run: Callable[..., Any] = subprocess.run
) -> ReleaseResult:
    """Promote (optional) → publish → cdk deploy → wait; on failure the alias returns to its previous version."""
    from servingkit.publish import PublishError, promote, publish

    result = ReleaseResult(req.stage, {})
    if req.version is not None:
        try:
            result.promoted = promote(req.name, {req.alias: req.version}, tracking_uri=req.tracking_uri)
        except PublishError as exc:
            raise ReleaseError(str(exc)) from None
        log(f"{req.name}@{req.alias}: {result.promoted[req.alias][0] or '(unset)'} -> {req.version}")
    try:
        _publish_deploy_wait(req, result, log, run, (publish, PublishError))
    except ReleaseError:
        _restore_alias(req, result, log)
        raise
    return result


def _publish_deploy_wait(
    req: ReleaseRequest,
    result: ReleaseResult,
    log: Callable[[str], None],
    run: Callable[..., Any],
    pub: tuple[Any, Any],
) -> None:
    publish, publish_error = pub
    bucket = req.bucket or stack_outputs(req.stage).get("ModelBucketName")
    if not bucket:
        raise ReleaseError(f"no model bucket: {stack_name(req.stage)} has no ModelBucketName output; give --bucket")
    try:
        published = publish(f"models:/{req.name}@{req.alias}", bucket, tracking_uri=req.tracking_uri)
    except publish_error as exc:
        raise ReleaseError(str(exc)) from None
    result.context = {Ctx.STAGE: req.stage, **published.context(), **_reference_context(published.manifest)}
    log(f"published {published.model_uri} sha256 {published.sha256}")
    since = datetime.now(UTC)
    command = [*req.cdk, "deploy", stack_name(req.stage), *cdk_args(result.context), "--require-approval", "never"]
    log("$ " + shlex.join([*command, *req.cdk_extra]))
    deployed = run([*command, *req.cdk_extra], check=False)
    application = stack_outputs(req.stage).get("DeploymentApplication")
    if application:
        # Also after a failed cdk deploy: CodeDeploy's own verdict says why (a hook, an alarm).
        result.deployments = wait_for_deployments(
            _client("codedeploy"), application, since, timeout_s=req.timeout_s, poll_s=req.poll_s
        )
    if deployed.returncode != 0:
        raise ReleaseError(f"cdk deploy {stack_name(req.stage)} failed (exit {deployed.returncode})")
    for d in result.deployments:
        log(f"{d.group}: deployment {d.deployment_id} {d.status}")


def _reference_context(manifest: Mapping[str, Any]) -> dict[str, str]:
    """The monitoring reference the manifest pins (used by a stage deployed with -c monitoring=true)."""
    ref = manifest.get("reference")
    if not ref:
        return {}
    return {Ctx.MODEL_REFERENCE_URI: str(ref["uri"]), Ctx.MODEL_REFERENCE_SHA256: str(ref["sha256"])}


def _restore_alias(req: ReleaseRequest, result: ReleaseResult, log: Callable[[str], None]) -> None:
    if req.alias not in result.promoted:
        return
    previous = result.promoted[req.alias][0]
    if previous is None:
        log(f"{req.name}@{req.alias} was unset before this release and still names {req.version}: move it by hand")
        return
    from servingkit.publish import promote

    promote(req.name, {req.alias: previous}, tracking_uri=req.tracking_uri)
    log(f"{req.name}@{req.alias}: back to {previous} (what the stage serves)")


def _client(service: str) -> Any:
    import boto3

    make: Any = boto3.client  # the service is a runtime name; boto3's stubs type each literal separately
    return make(service)
