"""FEATURE_HOOK is code execution: only code the image ships is imported, unless explicitly allowed.

Each planted module leaves a marker file when it is imported, so the tests check that a refused hook
was never run, not only that it was reported.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambda_fn import runtime
from lambda_fn.config import ConfigError
from lambda_fn.hook_origin import require_shipped, shipped_roots
from tests.helpers import FakeContext


def _plant(root: Path, module: str, marker: Path) -> None:
    """module a.b.c under root, every file of it leaving a line in marker when imported."""
    parts = module.split(".")
    here = root
    for part in parts[:-1]:
        here = here / part
        here.mkdir(exist_ok=True)
        (here / "__init__.py").write_text(f"open({str(marker)!r}, 'a').write({str(here)!r} + '\\n')\n")
    (here / f"{parts[-1]}.py").write_text(
        f"open({str(marker)!r}, 'a').write('module\\n')\ndef hook(rows):\n    return rows\n"
    )


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    """A directory outside the shipped roots, first on sys.path (as PYTHONPATH=/tmp/x or the cwd would be)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.syspath_prepend(str(outside))
    yield outside, tmp_path / "marker"
    for name in [m for m in sys.modules if m.split(".")[0] in ("planted_hook", "planted_pkg")]:
        del sys.modules[name]


@pytest.mark.parametrize("module", ["planted_hook", "planted_pkg.sub.hooks"])
def test_a_hook_outside_the_shipped_code_is_refused_before_it_is_imported(
    clean_env: pytest.MonkeyPatch, planted: tuple[Path, Path], module: str
) -> None:
    outside, marker = planted
    _plant(outside, module, marker)
    clean_env.setenv("MODEL_URI", "/nonexistent/model")
    clean_env.setenv("FEATURE_HOOK", f"{module}:hook")
    with pytest.raises(
        ConfigError, match=r"FEATURE_HOOK.*outside the code the image ships.*ALLOW_EXTERNAL_FEATURE_HOOK"
    ):
        runtime.hook()
    assert not marker.exists(), "nothing of the hook may run before the check"
    assert module.split(".")[0] not in sys.modules


def test_an_explicitly_allowed_external_hook_loads(clean_env: pytest.MonkeyPatch, planted: tuple[Path, Path]) -> None:
    outside, marker = planted
    _plant(outside, "planted_hook", marker)
    clean_env.setenv("MODEL_URI", "/nonexistent/model")
    clean_env.setenv("FEATURE_HOOK", "planted_hook:hook")
    clean_env.setenv("ALLOW_EXTERNAL_FEATURE_HOOK", "true")
    hook = runtime.hook()
    assert hook is not None and hook([1]) == [1]
    assert marker.read_text() == "module\n"


def test_the_shipped_hooks_and_installed_packages_pass(clean_env: pytest.MonkeyPatch) -> None:
    require_shipped("lambda_fn.hooks:taxi_features")
    require_shipped("tests.unit.test_api:tiny_hook")  # the checkout is the code root when run locally
    require_shipped("numpy:asarray")  # site-packages (in the image, requirements.txt goes to the task root)
    clean_env.setenv("MODEL_URI", "/nonexistent/model")
    clean_env.setenv("FEATURE_HOOK", "lambda_fn.hooks:taxi_features")
    assert runtime.hook() is not None


@pytest.mark.parametrize("hook", ["json:loads", "os.path:join", "sys:exit", "builtins:exec"])
def test_the_standard_library_and_built_ins_are_not_hooks(hook: str) -> None:
    with pytest.raises(ConfigError, match="outside the code the image ships"):
        require_shipped(hook)


def test_a_symlink_inside_a_shipped_root_that_leads_out_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_root, elsewhere = tmp_path / "task", tmp_path / "tmp"
    task_root.mkdir()
    elsewhere.mkdir()
    marker = tmp_path / "marker"
    _plant(elsewhere, "linked_hook", marker)
    (task_root / "linked_hook.py").symlink_to(elsewhere / "linked_hook.py")
    monkeypatch.syspath_prepend(str(task_root))
    with pytest.raises(ConfigError, match="outside the code the image ships"):
        require_shipped("linked_hook:hook", roots=[task_root.resolve()])
    require_shipped("linked_hook:hook", roots=[task_root.resolve(), elsewhere.resolve()])
    assert not marker.exists()


def test_the_roots_are_the_code_root_and_site_packages() -> None:
    import sysconfig

    import lambda_fn

    roots = shipped_roots()
    assert roots[0] == Path(lambda_fn.__file__).resolve().parents[1]
    assert Path(sysconfig.get_paths()["purelib"]).resolve() in roots


def test_the_api_answers_a_refused_hook_as_a_misconfiguration_without_the_path(
    clean_env: pytest.MonkeyPatch, planted: tuple[Path, Path], tmp_path: Path
) -> None:
    import json

    from lambda_fn import api
    from servingkit.http_local import build_event

    outside, marker = planted
    _plant(outside, "planted_hook", marker)
    clean_env.setenv("MODEL_URI", "/nonexistent/model")
    clean_env.setenv("FEATURE_HOOK", "planted_hook:hook")
    event = build_event("POST", "/predict", [("Content-Type", "application/json")], b'{"a": 1}')
    result = api.handle(event, FakeContext())
    assert result["statusCode"] == 503
    body = json.loads(result["body"])
    assert body["error"]["code"] == "service_unavailable" and str(outside) not in result["body"]
    assert not marker.exists()
