#!/usr/bin/env python3
"""CDK entry point: `npx cdk synth|deploy -c model_uri=s3://... -c model_sha256=...` (see docs/deploy.md)."""

from infra.node import prefer_wheel_node

prefer_wheel_node()

from infra.stack import build_app  # noqa: E402

build_app().synth()
