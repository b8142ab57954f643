"""Release checks: the CodeDeploy hooks that gate a traffic shift of the `live` aliases.

Before traffic (BeforeAllowTraffic), the new function version is invoked with a *smoke test* event: it scores
the release's input example with the model it loaded and writes nothing (no stream, no queue, no capture).
The hook passes only if the version answers, serves the pinned identity (sha256; name and version when the
deploy pins them) and predicts what publish recorded for that example (`release.json`'s `smoke`), within
`REL_TOL` / `ABS_TOL` (the same image and scikit-learn give the same floats; the tolerance covers another
CPU's rounding, never a different model). After traffic (AfterAllowTraffic), it passes only if none of the
release's alarms is in ALARM and the function's `live` alias had no Errors since the deployment began.

Either way the decision is reported with `PutLifecycleEventHookExecutionStatus`; CodeDeploy stops (and rolls
back) on `Failed`, so no traffic moves before the pre-traffic hook has passed. The reason is logged by the
hook and returned as its result. The logic here takes its clients and its invoker as arguments, so the tests
run it with fakes, against the emulator, and against the local cloud's functions alike.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lambda_fn.model_store import LoadedModel

SMOKE_TEST = "servingkit_smoke_test"  # the key of a smoke-test event: {"servingkit_smoke_test": {"rows": [...]}}
REL_TOL = 1e-6
ABS_TOL = 1e-9
SUCCEEDED, FAILED = "Succeeded", "Failed"

Invoker = Callable[[str, dict[str, Any]], Any]  # (function version ARN, event) -> the function's answer


class HookEnv:
    """Environment of the hook functions (set by infra/deployments.py from these names)."""

    TARGET = "HOOK_TARGET_FUNCTION"  # the ARN of the version being deployed (pre-traffic)
    FUNCTION_NAME = "HOOK_FUNCTION_NAME"  # the serving function (post-traffic: its Errors metric)
    ALIAS = "HOOK_ALIAS"  # the alias being shifted
    SHA256 = "HOOK_MODEL_SHA256"  # the release's pinned artifact digest
    MODEL_NAME = "HOOK_MODEL_NAME"  # the identity the deploy pins (optional)
    MODEL_VERSION = "HOOK_MODEL_VERSION"
    MANIFEST_URI = "HOOK_RELEASE_MANIFEST_URI"  # publish's release.json (optional: no prediction check without it)
    ALARMS = "HOOK_ALARM_NAMES"  # comma-separated: the release's alarms (post-traffic)


class InvocationFailedError(RuntimeError):
    """The target version raised (a FunctionError) or did not answer a smoke test."""


@dataclass(frozen=True, slots=True)
class Decision:
    succeeded: bool
    reason: str

    @property
    def status(self) -> str:
        return SUCCEEDED if self.succeeded else FAILED


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the new version must serve: the pinned identity and, when the release recorded them, predictions."""

    sha256: str
    name: str | None = None
    version: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    predictions: list[Any] | None = None
    rel_tol: float = REL_TOL
    abs_tol: float = ABS_TOL


# --------------------------------------------------------------------------- inside the serving function


def smoke_event(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {SMOKE_TEST: {"rows": [dict(r) for r in rows]}}


def is_smoke_test(event: Any) -> bool:
    return isinstance(event, dict) and isinstance(event.get(SMOKE_TEST), dict)


def answer_smoke_test(event: Mapping[str, Any], model: LoadedModel) -> dict[str, Any]:
    """Score the event's model-input rows (no feature hook: they are the model's own input example) and write
    nothing: the served identity, one prediction or error per row."""
    from lambda_fn.scoring import score_batch

    rows = event[SMOKE_TEST].get("rows") or []
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return {"model": model.identity, "error": "rows must be a list of objects"}
    result = score_batch(rows, model, finite=True)
    return {
        "model": model.identity,
        "predictions": result.predictions,
        "errors": {str(i): f"{e.reason}: {e.detail}" for i, e in sorted(result.errors.items())},
    }


# --------------------------------------------------------------------------- the pre-traffic decision


def expectation_from(environ: Mapping[str, str], manifest: Mapping[str, Any] | None) -> Expectation:
    """The release's expectation: identity from the environment, example and predictions from the manifest."""
    sha = environ[HookEnv.SHA256]
    smoke = (manifest or {}).get("smoke") or {}
    tol = smoke.get("tolerance") or {}
    return Expectation(
        sha256=sha,
        name=environ.get(HookEnv.MODEL_NAME) or None,
        version=environ.get(HookEnv.MODEL_VERSION) or None,
        rows=list(smoke.get("inputs") or []),
        predictions=list(smoke["predictions"]) if smoke.get("predictions") is not None else None,
        rel_tol=float(tol.get("rel", REL_TOL)),
        abs_tol=float(tol.get("abs", ABS_TOL)),
    )


def check_manifest(manifest: Mapping[str, Any], sha256: str) -> str | None:
    """Why a manifest cannot vouch for this release (None: it can)."""
    if manifest.get("sha256") != sha256:
        return f"release manifest is of model {manifest.get('sha256')}, not of the pinned {sha256}"
    return None


def check_before_traffic(invoke: Invoker, target: str, expected: Expectation) -> Decision:
    """Invoke `target` with the release's example; pass only on the pinned identity and the recorded predictions."""
    try:
        answer = invoke(target, smoke_event(expected.rows))
    except InvocationFailedError as exc:
        return Decision(False, f"{target} failed the smoke test: {exc}")
    if not isinstance(answer, dict) or not isinstance(answer.get("model"), dict):
        return Decision(False, f"{target} did not answer the smoke test (got {str(answer)[:200]!r})")
    served = answer["model"]
    for key, want in (("sha256", expected.sha256), ("name", expected.name), ("version", expected.version)):
        if want is not None and served.get(key) != want:
            return Decision(False, f"{target} serves {key} {served.get(key)!r}, the release pins {want!r}")
    if answer.get("error") or answer.get("errors"):
        return Decision(False, f"{target} rejected the release's example: {answer.get('error') or answer['errors']}")
    if expected.predictions is None:
        return Decision(True, f"{target} serves {served}; the release records no example, predictions not compared")
    mismatch = compare_predictions(expected.predictions, answer.get("predictions"), expected.rel_tol, expected.abs_tol)
    if mismatch:
        return Decision(False, f"{target}: {mismatch}")
    n = len(expected.predictions)
    return Decision(True, f"{target} serves {served} and predicts the {n} recorded outputs")


def compare_predictions(expected: Sequence[Any], actual: Any, rel_tol: float, abs_tol: float) -> str | None:
    """The first difference between recorded and served predictions, or None (numbers within tolerance)."""
    if not isinstance(actual, list) or len(actual) != len(expected):
        return f"expected {len(expected)} predictions, got {str(actual)[:200]!r}"
    for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
        if not _same(want, got, rel_tol, abs_tol):
            return f"prediction {i} is {got!r}, the release recorded {want!r} (rel_tol {rel_tol}, abs_tol {abs_tol})"
    return None


def _same(want: Any, got: Any, rel_tol: float, abs_tol: float) -> bool:
    if isinstance(want, list) and isinstance(got, list):
        return len(want) == len(got) and all(_same(w, g, rel_tol, abs_tol) for w, g in zip(want, got, strict=True))
    if isinstance(want, dict) and isinstance(got, dict):
        return want.keys() == got.keys() and all(_same(want[k], got[k], rel_tol, abs_tol) for k in want)
    if isinstance(want, bool) or isinstance(got, bool):
        return want is got
    if isinstance(want, int | float) and isinstance(got, int | float):
        return math.isclose(float(want), float(got), rel_tol=rel_tol, abs_tol=abs_tol)
    return bool(want == got)


def lambda_invoker(client: Any) -> Invoker:
    """Invoke a function version synchronously; a FunctionError becomes `InvocationFailedError` with its message."""

    def invoke(target: str, event: dict[str, Any]) -> Any:
        response = client.invoke(FunctionName=target, InvocationType="RequestResponse", Payload=json.dumps(event))
        body = response["Payload"].read()
        if response.get("FunctionError"):
            raise InvocationFailedError(f"{response['FunctionError']}: {body[:500].decode(errors='replace')}")
        return json.loads(body) if body else None

    return invoke


# --------------------------------------------------------------------------- the post-traffic decision


def check_after_traffic(
    cloudwatch: Any, alarm_names: Sequence[str], function_name: str, alias: str, since: datetime, until: datetime
) -> Decision:
    """Pass only if no release alarm is in ALARM and the alias had no Errors over [since, until]."""
    if alarm_names:
        alarms = cloudwatch.describe_alarms(AlarmNames=list(alarm_names))
        firing = [
            a["AlarmName"]
            for a in (*alarms.get("MetricAlarms", []), *alarms.get("CompositeAlarms", []))
            if a.get("StateValue") == "ALARM"
        ]
        if firing:
            return Decision(False, f"alarms in ALARM after the shift: {', '.join(sorted(firing))}")
    errors = _errors(cloudwatch, function_name, alias, since, until)
    if errors > 0:
        return Decision(False, f"{function_name}:{alias} had {errors:g} errors since the deployment began")
    return Decision(True, f"no alarm in ALARM ({len(alarm_names)} watched) and no errors on {function_name}:{alias}")


def _errors(cloudwatch: Any, function_name: str, alias: str, since: datetime, until: datetime) -> float:
    query = {
        "Id": "errors",
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/Lambda",
                "MetricName": "Errors",
                "Dimensions": [
                    {"Name": "FunctionName", "Value": function_name},
                    {"Name": "Resource", "Value": f"{function_name}:{alias}"},
                ],
            },
            "Period": 60,
            "Stat": "Sum",
        },
    }
    start = since.replace(second=0, microsecond=0)  # whole minutes: the metric's period
    end = max(until, start + timedelta(minutes=1))
    data = cloudwatch.get_metric_data(MetricDataQueries=[query], StartTime=start, EndTime=end)
    return float(sum(sum(r.get("Values", [])) for r in data.get("MetricDataResults", [])))


# --------------------------------------------------------------------------- the hook, end to end


@dataclass(frozen=True, slots=True)
class Clients:
    codedeploy: Any
    invoke: Invoker | None = None
    s3: Any = None
    cloudwatch: Any = None


def run_hook(event: Mapping[str, Any], phase: str, environ: Mapping[str, str], clients: Clients) -> dict[str, str]:
    """Decide (`phase` "pre" or "post"), report the decision to CodeDeploy, return it. Never raises before the
    report: a hook that crashed would leave CodeDeploy waiting for its timeout, so any error is a `Failed`."""
    try:
        decision = _decide(event, phase, environ, clients)
    except Exception as exc:  # noqa: BLE001 - whatever went wrong, the deployment must stop with the reason
        decision = Decision(False, f"{phase}-traffic check could not run: {type(exc).__name__}: {exc}")
    clients.codedeploy.put_lifecycle_event_hook_execution_status(
        deploymentId=event["DeploymentId"],
        lifecycleEventHookExecutionId=event["LifecycleEventHookExecutionId"],
        status=decision.status,
    )
    return {"status": decision.status, "reason": decision.reason, "phase": phase}


def _decide(event: Mapping[str, Any], phase: str, environ: Mapping[str, str], clients: Clients) -> Decision:
    if phase == "pre":
        manifest = _manifest(environ, clients.s3)
        if manifest is not None and (problem := check_manifest(manifest, environ[HookEnv.SHA256])):
            return Decision(False, problem)
        if clients.invoke is None:
            raise ValueError("the pre-traffic check needs an invoker")
        return check_before_traffic(clients.invoke, environ[HookEnv.TARGET], expectation_from(environ, manifest))
    info = clients.codedeploy.get_deployment(deploymentId=event["DeploymentId"])["deploymentInfo"]
    since = info.get("createTime") or datetime.now(UTC) - timedelta(minutes=15)
    alarms = [a for a in environ.get(HookEnv.ALARMS, "").split(",") if a]
    fn, alias = environ[HookEnv.FUNCTION_NAME], environ[HookEnv.ALIAS]
    return check_after_traffic(clients.cloudwatch, alarms, fn, alias, since, datetime.now(UTC))


def _manifest(environ: Mapping[str, str], s3: Any) -> dict[str, Any] | None:
    uri = environ.get(HookEnv.MANIFEST_URI)
    if not uri:
        return None
    from lambda_fn.monitoring.s3_store import read_s3_uri

    data = json.loads(read_s3_uri(uri, s3))
    return data if isinstance(data, dict) else {}


def run_from_environment(event: Mapping[str, Any], phase: str) -> dict[str, str]:
    """The hook function's entry: boto3 clients after the environment is read (the handler calls this)."""
    import os

    from lambda_fn.runtime import client

    clients = Clients(
        codedeploy=client("codedeploy"),
        invoke=lambda_invoker(client("lambda")) if phase == "pre" else None,
        s3=client("s3") if phase == "pre" else None,
        cloudwatch=client("cloudwatch") if phase == "post" else None,
    )
    return run_hook(event, phase, os.environ, clients)
