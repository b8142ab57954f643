"""The packages' imports, read from their source with `ast`: no cycles, one direction, no private names.

- No import cycles among the modules of `lambda_fn`, `servingkit` and `infra`, counting imports inside
  functions and under `TYPE_CHECKING` too (a lazy import that closes a cycle is still a cycle).
- Direction: `lambda_fn` (what the image ships) imports neither `servingkit` nor `infra`; `infra` (the CDK
  app) may import `lambda_fn` but not `servingkit`.
- No module imports another module's private (`_name`) names.

`from pkg import name` counts as an import of the submodule `pkg.name` when there is one, else of the
package's `__init__`; a submodule does not depend on its package's `__init__` merely by living in it.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("lambda_fn", "servingkit", "infra")
FORBIDDEN = {"lambda_fn": ("servingkit", "infra"), "infra": ("servingkit",)}
# Cycles known when this test was written; both lambda_fn ones are gone (issue 12). Nothing may be added here.
KNOWN_CYCLES: set[frozenset[str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


MODULES = _modules()


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` names (relative imports resolved against `importer`)."""
    if not node.level:
        return node.module or ""
    is_package = MODULES[importer].name == "__init__.py"
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


@functools.cache
def _imports(name: str) -> tuple[tuple[str, str | None, int], ...]:
    """(imported first-party module, imported name or None, line) for every import in module `name`."""
    return tuple(_walk_imports(name))


def _walk_imports(name: str) -> Iterator[tuple[str, str | None, int]]:
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name
                while target and target not in MODULES:  # `import a.b.c` of a non-module attribute path
                    target = target.rpartition(".")[0]
                if target:
                    yield target, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, node)
            if base.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in MODULES:
                    yield sub, None, node.lineno
                elif base in MODULES:
                    yield base, alias.name, node.lineno


def _graph() -> dict[str, set[str]]:
    return {name: {target for target, _, _ in _imports(name) if target != name} for name in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_graph_sees_the_packages_and_their_imports() -> None:
    graph = _graph()
    assert {"lambda_fn.config", "servingkit.localcloud.cloud", "infra.stack"} <= graph.keys()
    assert "servingkit.localcloud.collector" in graph["servingkit.localcloud.cloud"]
    assert "lambda_fn.config" in graph["servingkit.localcloud.cloud"]


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles(package: str) -> None:
    cycles = [c for c in _cycles(_graph()) if c[0].split(".")[0] == package]
    assert [c for c in cycles if not any(set(c) <= known for known in KNOWN_CYCLES)] == []  # debts only shrink


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_go_one_way(package: str) -> None:
    wrong = [
        f"{name}:{line} imports {target}"
        for name in MODULES
        if name.split(".")[0] == package
        for target, _, line in _imports(name)
        if target.split(".")[0] in FORBIDDEN[package]
    ]
    assert wrong == []


def test_no_module_imports_another_modules_private_names() -> None:
    wrong = [
        f"{name}:{line} imports {target}.{imported}"
        for name in MODULES
        for target, imported, line in _imports(name)
        if imported is not None and imported.startswith("_") and not imported.startswith("__") and target != name
    ]
    assert wrong == []
