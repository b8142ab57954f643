"""`servingkit publish` and `servingkit promote`: the model bucket and the registry's aliases."""

from __future__ import annotations

import json
from pathlib import Path

import click

from servingkit.cli.errors import user_errors
from servingkit.cli.options import tracking_uri_option

# servingkit.publish.DEFAULT_PREFIX (not imported here: that module loads boto3 and MLflow's client).
DEFAULT_PREFIX = "models"


@click.command()
@click.argument("model_uri")
@click.option(
    "--bucket",
    envvar="MODEL_BUCKET",
    show_envvar=True,
    help="Model bucket (default: $MODEL_BUCKET; the CDK stack outputs its name).",
)
@click.option("--prefix", default=DEFAULT_PREFIX, help="Key prefix inside the bucket.")
@click.option("--name", help="Model name (default: the registered name, or MLmodel metadata).")
@click.option("--version", help="Version label (default: the registry version, or the run id).")
@click.option("--no-verify", is_flag=True, help="Skip downloading and re-hashing the upload.")
@click.option("--no-tag", is_flag=True, help="Do not tag the registry version with the S3 location.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (context and manifest).")
@click.option(
    "--allow-env-mismatch",
    is_flag=True,
    help="Publish a model saved by another Python minor (pickle-based) or scikit-learn minor than the image's; "
    "the function then needs MODEL_ALLOW_ENV_MISMATCH=true to load it.",
)
@click.option(
    "--reference-data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV, Parquet or JSON-lines rows of the signature's columns to build the monitoring reference from "
    "(the model predicts on them); default: the model directory's reference.json (servingkit train writes it), "
    "else the MLflow run's, else none (monitoring will have no reference).",
)
@tracking_uri_option
def publish(
    model_uri: str,
    bucket: str | None,
    prefix: str,
    name: str | None,
    version: str | None,
    no_verify: bool,
    no_tag: bool,
    as_json: bool,
    allow_env_mismatch: bool,
    reference_data: Path | None,
    tracking_uri: str,
) -> None:
    """Copy a model into the bucket under its sha256, with a release manifest, and print the deploy command.

    MODEL_URI: models:/name@alias, models:/name/3, runs:/<run>/model or a local path.

    S3 is reached with the standard AWS configuration (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL or
    AWS_ENDPOINT_URL_S3 for an emulator); MLflow with --tracking-uri or MLFLOW_TRACKING_URI.
    Exit status: 0 published, 1 refused (the reason on one line), 2 usage error.

    \b
      servingkit publish models:/taxi-ride-duration@champion --bucket my-models
    """
    if not bucket:
        raise click.UsageError("give --bucket or set MODEL_BUCKET (the CDK stack outputs the model bucket name)")
    from servingkit.publish import PublishError
    from servingkit.publish import publish as publish_model
    from servingkit.tracking import process_store

    with user_errors(PublishError), process_store(tracking_uri):
        result = publish_model(
            model_uri,
            bucket,
            prefix=prefix,
            name=name,
            version=version,
            tracking_uri=tracking_uri,
            verify=not no_verify,
            tag_registry=not no_tag,
            allow_env_mismatch=allow_env_mismatch,
            reference_data=reference_data,
        )
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps({**result.context(), "manifest_uri": result.manifest_uri, "manifest": result.manifest}))
        return
    m = result.manifest
    state = "already published (unchanged)" if result.already_published else "published"
    click.echo(f"{state}: {m['name']} version {m['version']}")
    click.echo(f"  model_uri    {result.model_uri}")
    click.echo(f"  sha256       {result.sha256}")
    click.echo(f"  manifest     {result.manifest_uri}")
    ref = m.get("reference")
    click.echo(f"  reference    {ref['uri']} sha256 {ref['sha256']}" if ref else "  reference    none (no monitoring)")
    click.echo(f"  files        {len(result.uploaded)} uploaded, {len(result.unchanged)} already there")
    click.echo(f"  verified     {'yes (downloaded and re-hashed)' if result.verified else 'skipped (--no-verify)'}")
    click.echo("deploy with:")
    click.echo(f"  {result.deploy_command()}")


@click.command()
@click.argument("name")
@click.option("--champion", help="Version to serve.")
@click.option("--challenger", help="Version to compare (shadow or A/B).")
@tracking_uri_option
def promote(name: str, champion: str | None, challenger: str | None, tracking_uri: str) -> None:
    """Point the champion and/or challenger alias of registered model NAME at registry versions.

    MLflow is reached with --tracking-uri or MLFLOW_TRACKING_URI. Exit status 1 when a version cannot be
    promoted (the reason on one line).

    \b
      servingkit promote taxi-ride-duration --champion 3 --challenger 4
    """
    from servingkit.publish import PublishError
    from servingkit.publish import promote as promote_versions
    from servingkit.tracking import process_store

    aliases = {a: v for a, v in (("champion", champion), ("challenger", challenger)) if v}
    with user_errors(PublishError), process_store(tracking_uri):
        changes = promote_versions(name, aliases, tracking_uri=tracking_uri)
    for alias, (old, new) in changes.items():
        click.echo(f"{name}@{alias}: {old or '(unset)'} -> {new}")
    if "champion" in changes:
        click.echo(f"publish it with: servingkit publish 'models:/{name}@champion' --bucket \"$MODEL_BUCKET\"")
