#!/usr/bin/env python3
"""CDK entry point: `npx cdk synth|deploy -c model_uri=s3://... -c model_sha256=...` (see docs/deploy.md).

A context value that is missing or wrong is the person's to fix: one line on stderr naming the key and how
to pass it, exit status 1, never a traceback (cdk then reports that the app failed).
"""

import sys

from infra.node import prefer_wheel_node

prefer_wheel_node()

from infra.deploy_role import delivery_app  # noqa: E402
from infra.stack import build_app  # noqa: E402
from infra.topology import TopologyError  # noqa: E402

# -c github_repo=owner/name: the delivery pipeline's OIDC roles alone (docs/delivery.md); else the serving stack.
try:
    app = delivery_app() or build_app()
except TopologyError as exc:
    print(f"error: {exc} (docs/deploy.md lists every context key)", file=sys.stderr)
    sys.exit(1)
app.synth()
