"""Model store: fetch the artifact from S3 once, verify its sha256, load it, expose one predict call.

Supported artifacts:
- an MLflow model directory (a prefix holding `MLmodel`): the sklearn flavour is loaded directly
  (skops, pickle or cloudpickle) without importing mlflow; other flavours fall back to
  `mlflow.pyfunc` when mlflow is installed in the image;
- a single scikit-learn file: `.skops` (safe format) or `.joblib` / `.pkl` / `.pickle`.

Loading a pickle executes code, so pickle-based formats load only when `MODEL_SHA256` pins the
artifact (or `ALLOW_UNPINNED_PICKLE=true` says the risk is accepted). skops loads only types it
trusts, plus those the MLmodel file or `MODEL_TRUSTED_TYPES` names. An MLflow directory's recorded Python
and scikit-learn versions are compared with the runtime's before it loads (`lambda_fn.model_env`).

The sha256 of a directory is the sha256 of its manifest: one line `<sha256 of file>  <relative path>`
per file, sorted by path, joined with newlines. `artifact_sha256()` computes both forms.

The parts: `lambda_fn.model_fetch` brings the artifact into the local cache (S3 object or prefix, or a
local path); `lambda_fn.model_artifact` computes the digest and holds the rules that make the pin cover
exactly what is loaded (regular files only, no path leaving the artifact, only files of the verified
manifest opened); this module loads and checks the model. Its names for the other two (`fetch`,
`s3_client`, `artifact_sha256`, `artifact_digest`) are the ones the rest of the kit imports.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from lambda_fn.model_artifact import Artifact, artifact_digest, artifact_sha256
from lambda_fn.model_errors import (
    MLMODEL,
    ChecksumMismatchError,
    ModelLoadError,
    ModelNotFoundError,
    ModelStoreError,
    UnsafeArtifactError,
)
from lambda_fn.model_fetch import fetch, s3_client
from lambda_fn.schema import Signature

if TYPE_CHECKING:
    import pandas as pd

    from lambda_fn.config import Settings

__all__ = [
    "MLMODEL",
    "PICKLE_SUFFIXES",
    "SKOPS_SUFFIX",
    "Artifact",
    "ChecksumMismatchError",
    "LoadedModel",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelStoreError",
    "UnsafeArtifactError",
    "artifact_digest",
    "artifact_sha256",
    "fetch",
    "input_example",
    "load_model",
    "s3_client",
]

PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
SKOPS_SUFFIX = ".skops"


@dataclass(slots=True)
class LoadedModel:
    """A model ready to score: identity for every output record, and one batch predict call."""

    name: str
    version: str
    sha256: str
    uri: str
    format: str
    signature: Signature | None
    load_seconds: float
    loaded_at: float
    estimator: Any = field(repr=False)
    feature_names: list[str] | None = None
    _predict: Callable[[Any], Any] | None = field(default=None, repr=False)
    env_warnings: list[str] = field(default_factory=list)  # recorded vs runtime versions (lambda_fn.model_env)
    one_row: Callable[[Any], Any] | None = field(default=None, repr=False)  # SINGLE_ROW_FAST_PATH (fast_path)

    @property
    def identity(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}

    def predict(self, frame: pd.DataFrame) -> list[Any]:
        """One call for the whole batch; returns plain Python values, one per row."""
        out = self.one_row(frame) if self.one_row is not None and len(frame) == 1 else None
        if out is not None:
            return _to_python(out)
        if self._predict is not None:
            out = self._predict(frame)
        else:
            if self.feature_names is not None:
                missing = [c for c in self.feature_names if c not in frame.columns]
                if missing:
                    raise ValueError(f"model needs columns {missing} that the input does not have")
                x: Any = frame[self.feature_names]
            elif len(frame.columns) and all(dt.kind in "biuf" for dt in frame.dtypes):
                x = frame.to_numpy()
            else:
                x = frame
            out = self.estimator.predict(x)
        return _to_python(out)


def _to_python(out: Any) -> list[Any]:
    if hasattr(out, "to_dict") and hasattr(out, "columns"):
        records: list[Any] = out.to_dict(orient="records")
        return records
    if hasattr(out, "tolist"):
        values: list[Any] = out.tolist()
        return values
    return list(out)


# --------------------------------------------------------------------------- loading


def _read_mlmodel(path: Path) -> dict[str, Any]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's safe loader when PyYAML has it: same rules
    try:
        data = yaml.load((path / MLMODEL).read_text(), Loader=loader)
    except (OSError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"cannot read {path / MLMODEL}: {exc}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path / MLMODEL} is not an MLmodel file")
    return data


def _refuse_escaping_paths(value: Any, where: str) -> None:
    """Every path an MLmodel names (model file, data, code, environment, input example) stays inside.

    mlflow joins these names to the model directory, and an absolute name or one with a `..` segment
    would make it open a file the digest never covered.
    """
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_escaping_paths(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _refuse_escaping_paths(item, f"{where}[{i}]")
    elif isinstance(value, str):
        absolute = value.startswith(("/", "~", "\\")) or (len(value) > 1 and value[1] == ":" and value[0].isalpha())
        if absolute or ".." in value.replace("\\", "/").split("/"):
            raise UnsafeArtifactError(f"MLmodel {where} is {value!r}, a path outside the model directory")


def _require_pin(fmt: str, pinned: bool, allow_unpinned: bool) -> None:
    if not pinned and not allow_unpinned:
        raise ModelLoadError(
            f"refusing to load a {fmt} artifact without MODEL_SHA256: unpickling runs code. Set MODEL_SHA256 "
            "to the artifact's sha256 (scripts/publish.py prints it), save the model with skops, or set "
            "ALLOW_UNPINNED_PICKLE=true to accept the risk"
        )


def _load_skops(path: Path, trusted: list[str]) -> Any:
    """One pass: skops refuses untrusted types itself, and we turn its refusal into a clear message."""
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    try:
        return sio.load(str(path), trusted=trusted or None)
    except UntrustedTypesFoundException as exc:
        raise ModelLoadError(
            f"skops artifact {path.name} contains types that are not trusted ({exc}). Review them and list them "
            "in MODEL_TRUSTED_TYPES (comma-separated) or in the MLmodel skops_trusted_types of a pinned artifact"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any parse failure means an unreadable artifact
        raise ModelLoadError(f"{path.name} is not a readable skops file: {type(exc).__name__}: {exc}") from None


def _load_pickle(path: Path, fmt: str) -> Any:
    try:
        if fmt == "cloudpickle":
            import cloudpickle

            with path.open("rb") as fh:
                return cloudpickle.load(fh)
        import joblib

        return joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - any failure means an unreadable artifact
        raise ModelLoadError(f"cannot load {fmt} artifact {path.name}: {type(exc).__name__}: {exc}") from None


def _load_file(path: Path, trusted: list[str], pinned: bool, allow_unpinned: bool) -> tuple[Any, str]:
    suffix = path.suffix.lower()
    if suffix == SKOPS_SUFFIX:
        return _load_skops(path, trusted), "skops"
    if suffix in PICKLE_SUFFIXES:
        fmt = "joblib" if suffix == ".joblib" else "pickle"
        _require_pin(fmt, pinned, allow_unpinned)
        return _load_pickle(path, fmt), fmt
    raise ModelLoadError(
        f"unsupported model file {path.name!r}: expected .skops, .joblib, .pkl or an MLflow model directory"
    )


def _load_mlflow_dir(
    artifact: Artifact, trusted: list[str], pinned: bool, allow_unpinned: bool
) -> tuple[Any, str, Signature | None, dict[str, Any], Callable[[Any], Any] | None]:
    path = artifact.root
    mlmodel = _read_mlmodel(path)
    _refuse_escaping_paths(mlmodel.get("flavors") or {}, "flavors")
    _refuse_escaping_paths(mlmodel.get("saved_input_example_info") or {}, "saved_input_example_info")
    signature = Signature.from_mlmodel(mlmodel)
    flavors = mlmodel.get("flavors") or {}
    sk = flavors.get("sklearn")
    if sk:
        fmt = sk.get("serialization_format", "cloudpickle")
        name = str(sk.get("pickled_model", "model.pkl"))
        model_file = artifact.file(name, "MLmodel sklearn pickled_model")
        if model_file is None:
            raise ModelLoadError(f"MLmodel names {name} but the directory has no such file")
        if fmt == "skops":
            # Types the artifact itself declares as trusted count only when its checksum is pinned:
            # otherwise anyone who can write to the bucket could vouch for their own file.
            extra = list(sk.get("skops_trusted_types") or []) if pinned else []
            return _load_skops(model_file, trusted + extra), "mlflow-sklearn-skops", signature, mlmodel, None
        if fmt not in ("pickle", "cloudpickle"):
            raise ModelLoadError(f"unsupported sklearn serialization_format {fmt!r} in MLmodel")
        _require_pin(fmt, pinned, allow_unpinned)
        return _load_pickle(model_file, fmt), f"mlflow-sklearn-{fmt}", signature, mlmodel, None
    if "python_function" in flavors:
        _require_pin("mlflow pyfunc", pinned, allow_unpinned)
        try:
            import mlflow.pyfunc
        except ImportError:
            raise ModelLoadError(
                f"model flavours {sorted(flavors)} need mlflow to load; add mlflow-skinny to the image's "
                "requirements.txt, or export the model with the sklearn flavour"
            ) from None
        try:
            pyfunc = mlflow.pyfunc.load_model(str(path))
        except Exception as exc:  # noqa: BLE001 - any failure means an unreadable artifact
            raise ModelLoadError(f"mlflow could not load {path}: {exc}") from None
        return pyfunc, "mlflow-pyfunc", signature, mlmodel, pyfunc.predict
    raise ModelLoadError(f"MLmodel at {path} has no sklearn or python_function flavour: {sorted(flavors)}")


def load_model(settings: Settings, s3: Any | None = None) -> LoadedModel:
    """Fetch, verify and load the configured model. Raises ModelStoreError subclasses with the cause."""
    started = time.perf_counter()
    local, s3_version = fetch(settings.model_uri, settings.model_cache_dir, s3)
    artifact = Artifact.verify(local)
    actual = artifact.sha256
    if settings.model_sha256 and actual != settings.model_sha256:
        raise ChecksumMismatchError(
            f"checksum mismatch for {settings.model_uri}: MODEL_SHA256 is {settings.model_sha256} but the "
            f"artifact is {actual}; nothing will be scored. Publish again or fix MODEL_SHA256"
        )
    loaded = _load_artifact(settings, local, artifact)
    signature = Signature.from_columns(settings.input_schema) if settings.input_schema else loaded.signature
    if loaded.predict is None and not hasattr(loaded.estimator, "predict"):
        raise ModelLoadError(f"loaded object {type(loaded.estimator).__name__} has no predict method")
    names = getattr(loaded.estimator, "feature_names_in_", None)
    name, version = _identity(settings, loaded.mlmodel, s3_version, actual)
    model = LoadedModel(
        name=name,
        version=version,
        sha256=actual,
        uri=settings.model_uri,
        format=loaded.format,
        signature=signature,
        load_seconds=0.0,
        loaded_at=0.0,
        estimator=loaded.estimator,
        feature_names=[str(n) for n in names] if names is not None else None,
        _predict=loaded.predict,
        env_warnings=loaded.env_warnings,
    )
    if settings.single_row_fast_path and loaded.predict is None:
        from lambda_fn.fast_path import compile_one_row

        model.one_row = compile_one_row(loaded.estimator)
    if local.is_dir():
        _self_check(artifact, loaded.mlmodel, model)
    model.load_seconds, model.loaded_at = time.perf_counter() - started, time.time()  # the self-check included
    return model


@dataclass(slots=True)
class _Loaded:
    """What loading an artifact gave: the object, its format, and what an MLflow directory adds."""

    estimator: Any
    format: str
    signature: Signature | None = None
    mlmodel: dict[str, Any] = field(default_factory=dict)
    predict: Callable[[Any], Any] | None = None  # set when the estimator's own predict is not the call (pyfunc)
    env_warnings: list[str] = field(default_factory=list)


def _load_artifact(settings: Settings, local: Path, artifact: Artifact) -> _Loaded:
    """Load a verified artifact: a single model file, or an MLflow directory after its environment check."""
    trusted = list(settings.model_trusted_types)
    pinned = settings.model_sha256 is not None
    if not local.is_dir():
        estimator, fmt = _load_file(local, trusted, pinned, settings.allow_unpinned_pickle)
        return _Loaded(estimator, fmt)
    if MLMODEL not in artifact.keys:
        raise ModelLoadError(f"{settings.model_uri} is a directory without an MLmodel file")
    from lambda_fn.model_env import check_model_env  # before unpickling: a refusal is a ModelLoadError

    env_warnings = check_model_env(local, allow_mismatch=settings.model_allow_env_mismatch, where=settings.model_uri)
    estimator, fmt, signature, mlmodel, predict_fn = _load_mlflow_dir(
        artifact, trusted, pinned, settings.allow_unpinned_pickle
    )
    return _Loaded(estimator, fmt, signature, mlmodel, predict_fn, env_warnings)


def _identity(settings: Settings, mlmodel: dict[str, Any], s3_version: str | None, sha256: str) -> tuple[str, str]:
    """The model's name and version: as configured, else the MLmodel metadata, else what the store knows."""
    meta = mlmodel.get("metadata") or {}
    name = settings.model_name or meta.get("name") or _default_name(settings.model_uri)
    version = (
        settings.model_version
        or (str(meta["version"]) if meta.get("version") is not None else None)
        or s3_version
        or mlmodel.get("run_id")
        or sha256[:12]
    )
    return str(name), str(version)


def _self_check(artifact: Artifact, mlmodel: dict[str, Any], model: LoadedModel) -> None:
    """Score the model's own input example once: a model that cannot is broken, not fed poison.

    This is what lets the scorer treat later row failures as bad rows (dead-lettered, 422 in the API)
    rather than as a broken deployment (batch retried, 500), from the first request on.
    """
    frame = input_example(artifact, mlmodel)
    if frame is None:
        return
    from lambda_fn.scoring import ModelBatchError, self_check  # deferred: only a model with an example needs it

    try:
        self_check(model, frame)  # scored: the example is the model's reference row from now on
    except ModelBatchError as exc:
        raise ModelLoadError(f"model loaded but {exc} (its input example)") from None


def input_example(artifact: Artifact, mlmodel: dict[str, Any]) -> pd.DataFrame | None:
    """The MLflow directory's input example as a frame (a verified file only), or None if it has none we can read.

    The load's self-check scores it, and publish records the predictions on it for the release hook."""
    info = mlmodel.get("saved_input_example_info") or {}
    example = artifact.file(str(info.get("artifact_path", "input_example.json")), "MLmodel input example")
    if info.get("type", "dataframe") != "dataframe" or example is None:
        return None
    import json

    import pandas as pd

    try:
        raw = json.loads(example.read_text())
        if isinstance(raw, dict) and "columns" in raw and "data" in raw:
            return pd.DataFrame(raw["data"], columns=raw["columns"])
        return pd.DataFrame(raw)
    except (ValueError, TypeError, OSError):
        return None  # an example we cannot read proves nothing either way


def _default_name(uri: str) -> str:
    stem = Path(urlparse(uri).path.rstrip("/")).name
    for suffix in (SKOPS_SUFFIX, *PICKLE_SUFFIXES):
        stem = stem.removesuffix(suffix)
    return stem or "model"
