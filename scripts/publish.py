#!/usr/bin/env python3
"""Publish an MLflow model to the model bucket (content-addressed, with a release manifest), or promote
registry versions to the champion / challenger aliases.

  scripts/publish.py publish models:/taxi-ride-duration@champion --bucket my-models
  scripts/publish.py promote taxi-ride-duration --champion 3 --challenger 4

S3 is reached with the standard AWS configuration (profile, region, AWS_ENDPOINT_URL_S3 for an emulator);
MLflow with --tracking-uri or MLFLOW_TRACKING_URI.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from servingkit.publish import DEFAULT_PREFIX, PublishError, promote, publish


def _publish(args: argparse.Namespace) -> int:
    bucket = args.bucket or os.environ.get("MODEL_BUCKET")
    if not bucket:
        print("error: give --bucket or set MODEL_BUCKET (the CDK stack outputs the model bucket name)", file=sys.stderr)
        return 2
    result = publish(
        args.model_uri,
        bucket,
        prefix=args.prefix,
        name=args.name,
        version=args.version,
        tracking_uri=args.tracking_uri,
        verify=not args.no_verify,
        tag_registry=not args.no_tag,
        allow_env_mismatch=args.allow_env_mismatch,
    )
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps({**result.context(), "manifest_uri": result.manifest_uri, "manifest": result.manifest}))
        return 0
    m = result.manifest
    state = "already published (unchanged)" if result.already_published else "published"
    print(f"{state}: {m['name']} version {m['version']}")
    print(f"  model_uri    {result.model_uri}")
    print(f"  sha256       {result.sha256}")
    print(f"  manifest     {result.manifest_uri}")
    print(f"  files        {len(result.uploaded)} uploaded, {len(result.unchanged)} already there")
    print(f"  verified     {'yes (downloaded and re-hashed)' if result.verified else 'skipped (--no-verify)'}")
    print("deploy with:")
    print(f"  {result.deploy_command()}")
    return 0


def _promote(args: argparse.Namespace) -> int:
    aliases = {a: v for a, v in (("champion", args.champion), ("challenger", args.challenger)) if v}
    changes = promote(args.name, aliases, tracking_uri=args.tracking_uri)
    for alias, (old, new) in changes.items():
        print(f"{args.name}@{alias}: {old or '(unset)'} -> {new}")
    if "champion" in changes:
        print(f"publish it with: scripts/publish.py publish 'models:/{args.name}@champion' --bucket <model bucket>")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", help="MLflow tracking/registry URI (default: $MLFLOW_TRACKING_URI)")
    sub = parser.add_subparsers(dest="command", required=True)

    pub = sub.add_parser("publish", help="copy a model into the bucket under its sha256 and print the deploy command")
    pub.add_argument("model_uri", help="models:/name@alias, models:/name/3, runs:/<run>/model or a local path")
    pub.add_argument("--bucket", help="model bucket (default: $MODEL_BUCKET)")
    pub.add_argument("--prefix", default=DEFAULT_PREFIX, help="key prefix inside the bucket (default: %(default)s)")
    pub.add_argument("--name", help="model name (default: the registered name, or MLmodel metadata)")
    pub.add_argument("--version", help="version label (default: the registry version, or the run id)")
    pub.add_argument("--no-verify", action="store_true", help="skip downloading and re-hashing the upload")
    pub.add_argument("--no-tag", action="store_true", help="do not tag the registry version with the S3 location")
    pub.add_argument("--json", action="store_true", help="print one JSON object (context and manifest)")
    pub.add_argument(
        "--allow-env-mismatch",
        action="store_true",
        help="publish a model saved by another Python minor (pickle-based) or scikit-learn minor than the image's; "
        "the function then needs MODEL_ALLOW_ENV_MISMATCH=true to load it",
    )
    pub.set_defaults(func=_publish)

    pro = sub.add_parser("promote", help="point the champion and/or challenger alias at registry versions")
    pro.add_argument("name", help="registered model name")
    pro.add_argument("--champion", help="version to serve")
    pro.add_argument("--challenger", help="version to compare (shadow or A/B)")
    pro.set_defaults(func=_promote)

    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())
