"""The modules of lambda_fn.api import downward only, in one declared order (read from the source).

Cycles and private names across the packages are checked in test_import_graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "lambda_fn"
# lambda_fn.api, bottom first: a module may import only those before it.
API_LAYERS = ["schemas", "errors", "request", "inputs", "openapi", "serving", "routes", "app"]


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every lambda_fn module `path` imports when it runs: at module level or inside functions, not for typing."""
    out: set[str] = set()
    tree = ast.parse(path.read_text())
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
        for n in ast.walk(block)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("lambda_fn"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lambda_fn"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)  # `from lambda_fn import live`
    return out


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def test_api_modules_import_downward_only() -> None:
    graph = _graph()
    api = {f"lambda_fn.api.{m}" for m in (p.stem for p in (PACKAGE / "api").glob("*.py"))} - {
        "lambda_fn.api.__init__",
        "lambda_fn.api.__main__",
    }
    assert api == {f"lambda_fn.api.{m}" for m in API_LAYERS}, "a new module of lambda_fn.api needs its layer here"
    for level, name in enumerate(API_LAYERS):
        below = {f"lambda_fn.api.{m}" for m in API_LAYERS[:level]}
        inside = {m for m in graph[f"lambda_fn.api.{name}"] if m.startswith("lambda_fn.api.")}
        assert inside <= below, f"lambda_fn.api.{name} imports {sorted(inside - below)}, which are not below it"
