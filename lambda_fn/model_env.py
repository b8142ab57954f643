"""The environment a model was saved in, compared with the one about to load it.

MLflow records it beside the model: `python_env.yaml` (`python: 3.13.0`, `dependencies: [-r requirements.txt]`),
`requirements.txt` (`scikit-learn==1.9.1`, ...) and `conda.yaml`; the MLmodel file repeats both versions
(`python_function.python_version`, `sklearn.sklearn_version`). Versions are read, first found wins:

- Python: `python_env.yaml`, else `conda.yaml` (`python=3.13.0`), else MLmodel `python_version`;
- scikit-learn: `requirements.txt` (an exact `==` pin), else `conda.yaml`'s pip list, else MLmodel `sklearn_version`.

Rules (the runtime is the running interpreter and installed scikit-learn at load, the image's at publish):

| what differs                          | skops   | pickle, cloudpickle, joblib, pyfunc |
| ------------------------------------- | ------- | ----------------------------------- |
| Python patch (3.13.0 vs 3.13.5)       | warning | warning                             |
| Python major.minor (3.12 vs 3.13)     | warning | refused (1)                         |
| scikit-learn patch (1.9.0 vs 1.9.1)   | warning | warning                             |
| scikit-learn major.minor (1.8 vs 1.9) | refused | refused (2)                         |

(1) pickled byte code is specific to the interpreter's minor version; (2) scikit-learn does not support
loading a model saved by another version (any flavour that records a scikit-learn version is checked).

A refusal names both versions and the file they came from; `MODEL_ALLOW_ENV_MISMATCH=true` (at load) or
`servingkit publish --allow-env-mismatch` turns refusals into warnings. Nothing recorded (no such
file, no scikit-learn pin) means nothing to compare: a debug log says so. A file that cannot be parsed is a
warning, never a crash. A patch level missing on one side (the image's Python is known as `3.13`) is not
compared. Single-file models (`.skops`, `.joblib`) record no environment and are not checked.

Runtime code of the image: PyYAML only, versions parsed by hand (no `packaging`).
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger

from lambda_fn.config import Env, service_name
from lambda_fn.model_errors import MLMODEL, ModelLoadError

logger = Logger(service=service_name(), child=True)

PYTHON_ENV = "python_env.yaml"
REQUIREMENTS = "requirements.txt"
CONDA = "conda.yaml"
SKLEARN = "scikit-learn"
LENIENT_FORMATS = ("skops",)
"""Formats that store no byte code: a Python minor difference is a warning. Every other format is pickle-based."""

_RELEASE = re.compile(r"^\s*v?(\d+(?:\.\d+)*)")
_PIN = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*===?\s*(?P<version>[^\s;#,]+)")
_CONDA_PYTHON = re.compile(r"^\s*python\s*=?=\s*(?P<version>[^\s=,]+)")


class EnvMismatchError(ModelLoadError):
    """The model was saved by a Python or scikit-learn this runtime must not load it with."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """One version and the file it was read from (`requirements.txt`, `MLmodel`, ...)."""

    version: str
    source: str


@dataclass(frozen=True, slots=True)
class RecordedEnv:
    python: Recorded | None = None
    sklearn: Recorded | None = None
    unreadable: tuple[str, ...] = ()
    """Files present but not parseable (each a warning)."""
    not_recorded: tuple[str, ...] = ()
    """What could not be compared because nothing records it (debug)."""


@dataclass(frozen=True, slots=True)
class Runtime:
    """The versions a model is checked against; `label` says whose they are in messages."""

    python: str
    sklearn: str | None
    label: str = "this runtime"

    @classmethod
    def current(cls) -> Runtime:
        """The running interpreter and the installed scikit-learn."""
        try:
            sklearn: str | None = metadata.version(SKLEARN)
        except metadata.PackageNotFoundError:
            sklearn = None
        return cls(python=platform.python_version(), sklearn=sklearn)


@dataclass(frozen=True, slots=True)
class EnvCheck:
    warnings: tuple[str, ...] = ()
    refusals: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    """Comparisons not made, and why (debug)."""


def canonical(name: str) -> str:
    """PEP 503 name: `scikit_learn` is `scikit-learn`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_version(requirements_text: str, name: str) -> str | None:
    """The exact `==` pin of `name` in requirements text, or None (absent, or a range)."""
    wanted = canonical(name)
    for line in requirements_text.splitlines():
        found = _PIN.match(re.sub(r"(^|\s)#.*$", "", line))
        if found and canonical(found["name"]) == wanted:
            return found["version"]
    return None


def _release(version: str) -> tuple[int, ...] | None:
    found = _RELEASE.match(version)
    return tuple(int(p) for p in found[1].split(".")) if found else None


def _yaml(path: Path, unreadable: list[str]) -> Any:
    """A file's YAML with every scalar a string (`python: 3.10` stays "3.10"); None when absent or garbled."""
    import yaml

    if not path.is_file():
        return None
    try:
        # Strings only, builds no objects; libyaml's parser when PyYAML has it (same rules, a tenth of the CPU).
        return yaml.load(path.read_text(), Loader=getattr(yaml, "CBaseLoader", yaml.BaseLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        unreadable.append(f"{path.name} is not readable YAML ({type(exc).__name__}); its versions are not compared")
        return None


def _conda(path: Path, unreadable: list[str]) -> tuple[str | None, str | None]:
    data = _yaml(path, unreadable)
    if data is None:
        return None, None
    deps = data.get("dependencies") if isinstance(data, dict) else None
    if not isinstance(deps, list):
        unreadable.append(f"{path.name} has no dependencies list; its versions are not compared")
        return None, None
    python = next((m["version"] for d in deps if isinstance(d, str) and (m := _CONDA_PYTHON.match(d))), None)
    pip: list[Any] = next((d["pip"] for d in deps if isinstance(d, dict) and isinstance(d.get("pip"), list)), [])
    sklearn = pinned_version("\n".join(p for p in pip if isinstance(p, str)), SKLEARN)
    return python, sklearn


def read_recorded(path: Path) -> RecordedEnv:
    """The Python and scikit-learn versions an MLflow model directory records (see module doc)."""
    path = Path(path)
    unreadable: list[str] = []
    python_env = _yaml(path / PYTHON_ENV, unreadable)
    if python_env is not None and not isinstance(python_env, dict):
        unreadable.append(f"{PYTHON_ENV} is not a mapping; its Python version is not compared")
    python = _text(python_env.get("python")) if isinstance(python_env, dict) else None
    conda_python, conda_sklearn = _conda(path / CONDA, unreadable)
    mlmodel = _yaml(path / MLMODEL, unreadable)
    flavors = mlmodel.get("flavors") if isinstance(mlmodel, dict) else None
    flavors = flavors if isinstance(flavors, dict) else {}
    pyfunc, sk = flavors.get("python_function"), flavors.get("sklearn")
    try:
        req_text = (path / REQUIREMENTS).read_text() if (path / REQUIREMENTS).is_file() else ""
    except (OSError, UnicodeDecodeError) as exc:
        unreadable.append(f"{REQUIREMENTS} is not readable ({type(exc).__name__}); its pins are not compared")
        req_text = ""
    pythons = [
        (python, PYTHON_ENV),
        (conda_python, CONDA),
        (_text(pyfunc.get("python_version")) if isinstance(pyfunc, dict) else None, MLMODEL),
    ]
    sklearns = [
        (pinned_version(req_text, SKLEARN), REQUIREMENTS),
        (conda_sklearn, CONDA),
        (_text(sk.get("sklearn_version")) if isinstance(sk, dict) else None, MLMODEL),
    ]
    found_python = next((Recorded(v, s) for v, s in pythons if v), None)
    found_sklearn = next((Recorded(v, s) for v, s in sklearns if v), None)
    not_recorded = []
    if found_python is None:
        not_recorded.append(f"no Python version recorded ({PYTHON_ENV}, {CONDA}, {MLMODEL}): nothing to compare")
    if found_sklearn is None:
        not_recorded.append(
            f"no scikit-learn version recorded (== pin in {REQUIREMENTS} or {CONDA}, or {MLMODEL}): nothing to compare"
        )
    return RecordedEnv(found_python, found_sklearn, tuple(unreadable), tuple(not_recorded))


def _text(value: object) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def model_format(path: Path) -> str:
    """How model_store loads the directory: the sklearn flavour's serialization_format, else `pyfunc`."""
    data = _yaml(Path(path) / MLMODEL, [])
    flavors = data.get("flavors") if isinstance(data, dict) else None
    sk = flavors.get("sklearn") if isinstance(flavors, dict) else None
    if isinstance(sk, dict):
        return str(sk.get("serialization_format") or "cloudpickle")  # MLflow's default, as model_store reads it
    return "pyfunc"


def compare(recorded: RecordedEnv, runtime: Runtime, fmt: str) -> EnvCheck:
    """Apply the rules (module doc) for a model of format `fmt` (`skops`, `mlflow-sklearn-cloudpickle`, ...)."""
    fmt = fmt.rsplit("-", 1)[-1]
    warnings = list(recorded.unreadable)
    refusals: list[str] = []
    skipped = list(recorded.not_recorded)
    for what, rec, current, strict, why in (
        (
            "Python",
            recorded.python,
            runtime.python,
            fmt not in LENIENT_FORMATS,
            f"a {fmt} model holds pickled byte code, which is specific to the interpreter's minor version",
        ),
        (
            SKLEARN,
            recorded.sklearn,
            runtime.sklearn,
            True,
            "scikit-learn does not support loading a model saved by another version",
        ),
    ):
        if rec is None:
            continue
        if current is None:
            skipped.append(f"{what} is not installed in {runtime.label}: the recorded {rec.version} is not compared")
            continue
        saved, here = _release(rec.version), _release(current)
        if saved is None or len(saved) < 2:
            warnings.append(f"{what} version {rec.version!r} in {rec.source} is not a version; not compared")
            continue
        if here is None or len(here) < 2:
            skipped.append(f"{what} version {current!r} of {runtime.label} is not a version; not compared")
            continue
        both = f"{what} {rec.version} recorded in the model's {rec.source}, {current} in {runtime.label}"
        if saved[:2] != here[:2]:
            if strict:
                refusals.append(f"{both}: {why}")
            else:
                warnings.append(f"{both} (a minor version apart; skops stores no byte code, but check the predictions)")
        elif len(saved) > 2 and len(here) > 2 and rec.version.strip() != current.strip():
            warnings.append(f"{both} (patch-level difference)")
    return EnvCheck(tuple(warnings), tuple(refusals), tuple(skipped))


def check_model_env(
    path: Path,
    *,
    allow_mismatch: bool = False,
    where: str | None = None,
    fmt: str | None = None,
    runtime: Runtime | None = None,
) -> list[str]:
    """Check an MLflow model directory before loading it; return the warnings (also logged).

    Raises EnvMismatchError (a ModelLoadError: the load fails, the cold start / 503 path applies) for a
    refusal, unless `allow_mismatch` (MODEL_ALLOW_ENV_MISMATCH) turns it into a warning.
    """
    where = where or str(path)
    result = compare(read_recorded(Path(path)), runtime or Runtime.current(), fmt or model_format(Path(path)))
    for note in result.skipped:
        logger.debug(f"model environment of {where}: {note}")
    if result.refusals and not allow_mismatch:
        raise EnvMismatchError(
            f"refusing to load {where}: {'; '.join(result.refusals)}. Re-save the model with this runtime's "
            f"versions (or serve it from an image that has its versions), or set {Env.MODEL_ALLOW_ENV_MISMATCH}=true "
            "to load it anyway"
        )
    warnings = [f"{r} (loaded anyway: {Env.MODEL_ALLOW_ENV_MISMATCH}=true)" for r in result.refusals]
    warnings.extend(result.warnings)
    for warning in warnings:
        logger.warning(f"model environment of {where}: {warning}")
    return warnings
