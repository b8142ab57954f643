#!/usr/bin/env python3
"""CDK entry point: `npx cdk synth|deploy -c model_uri=s3://... -c model_sha256=...` (see docs/deploy.md)."""

from infra.node import prefer_wheel_node

prefer_wheel_node()

from infra.deploy_role import delivery_app  # noqa: E402
from infra.stack import build_app  # noqa: E402

# -c github_repo=owner/name: the delivery pipeline's OIDC roles alone (docs/delivery.md); else the serving stack.
(delivery_app() or build_app()).synth()
