#!/usr/bin/env python3
"""CDK entry point: `npx cdk synth|deploy -c model_uri=s3://... -c model_sha256=...` (see docs/deploy.md)."""

from infra.stack import build_app

build_app().synth()
