"""Where a FEATURE_HOOK's code comes from, checked before it is imported.

A hook is `package.module:function`: importing it runs that module (and every package on its dotted
path) with the function's role and its model. The rule: each of those files must resolve, through the
import system's own finders and without importing anything, to a file under a root the image ships:

- the directory the kit's `lambda_fn` package was loaded from (LAMBDA_TASK_ROOT in the image, where
  the Dockerfile also installs requirements.txt; the checkout when run locally);
- this interpreter's site-packages (`sysconfig` purelib and platlib).

Everything else is refused: /tmp (the model cache lives there), the working directory or PYTHONPATH
entries outside those roots, the standard library and built-in modules (no hook lives there), and a
symlink inside a root that leads out of it. `ALLOW_EXTERNAL_FEATURE_HOOK=true` lifts the rule.
"""

from __future__ import annotations

import sys
import sysconfig
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path

import lambda_fn
from lambda_fn.config import ConfigError, Env


def shipped_roots() -> tuple[Path, ...]:
    """The kit's code root and this interpreter's site-packages, resolved."""
    code_root = Path(lambda_fn.__file__).resolve().parents[1]
    site = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
    return (code_root, *sorted(site))


def _find_spec(name: str, path: list[str] | None) -> ModuleSpec | None:
    """What `import name` would load, asked of the finders in order, as the import system does; runs nothing."""
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        spec = find(name, path) if find is not None else None
        if isinstance(spec, ModuleSpec):
            return spec
    return None


def _files_run_by_import(module_name: str) -> list[tuple[str, str | None]]:
    """(module, file) for the module and each package above it; file None for a namespace package."""
    out: list[tuple[str, str | None]] = []
    search: list[str] | None = None
    parts = module_name.split(".")
    for i in range(len(parts)):
        name = ".".join(parts[: i + 1])
        loaded = sys.modules.get(name)
        spec = getattr(loaded, "__spec__", None) if loaded is not None else _find_spec(name, search)
        if spec is None:
            if loaded is None:
                return out  # not importable: the import itself reports it
            out.append((name, getattr(loaded, "__file__", None) or "<no file>"))
            search = list(getattr(loaded, "__path__", []) or [])
            continue
        if spec.origin is None and spec.submodule_search_locations is not None:
            out.append((name, None))  # a namespace package runs no code of its own
        else:
            out.append((name, spec.origin if spec.has_location else f"<{spec.origin or 'built-in'}>"))
        search = list(spec.submodule_search_locations or [])
    return out


def require_shipped(hook: str, roots: Sequence[Path] | None = None) -> None:
    """Refuse, before importing it, a hook whose code is not under the shipped roots (see module doc)."""
    roots = tuple(roots) if roots is not None else shipped_roots()
    module_name = hook.partition(":")[0]
    for name, origin in _files_run_by_import(module_name):
        if origin is None:
            continue
        resolved = Path(origin).resolve() if not origin.startswith("<") else None
        if resolved is None or not any(resolved.is_relative_to(root) for root in roots):
            raise ConfigError(
                f"{Env.FEATURE_HOOK}={hook!r}: {name} would run {origin}, outside the code the image ships "
                f"({', '.join(str(r) for r in roots)}). A hook runs with the function's role: ship it in the "
                f"image (next to lambda_fn/hooks.py), or set {Env.ALLOW_EXTERNAL_FEATURE_HOOK}=true after review"
            )
