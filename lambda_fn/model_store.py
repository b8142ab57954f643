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

The pin covers exactly what is loaded (loading a pickle runs code): an artifact holds regular files only
(a symlink or special file inside it is refused, so nothing is reached that the manifest does not
list); every S3 key is placed under the cache or refused before anything is written; and the loader
opens only files of the verified manifest, by relative names that stay inside the artifact.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

from lambda_fn.model_errors import (
    MLMODEL,
    ChecksumMismatchError,
    ModelLoadError,
    ModelNotFoundError,
    ModelStoreError,
    UnsafeArtifactError,
)
from lambda_fn.schema import Signature

if TYPE_CHECKING:
    import pandas as pd

    from lambda_fn.config import Settings

PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
SKOPS_SUFFIX = ".skops"
_COMPLETE = ".complete"


@dataclass(frozen=True, slots=True)
class ModelLocation:
    scheme: str
    bucket: str
    key: str
    version_id: str | None = None

    @classmethod
    def parse(cls, uri: str) -> ModelLocation:
        if uri.startswith("/"):
            return cls("file", "", uri)
        parsed = urlparse(uri)
        if parsed.scheme == "file":
            return cls("file", "", parsed.path)
        if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
            raise ModelStoreError(f"model URI {uri!r} must be s3://bucket/key or file:///path")
        version = parse_qs(parsed.query).get("versionId", [None])[0]
        return cls("s3", parsed.netloc, parsed.path.lstrip("/"), version)


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

    @property
    def identity(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}

    def predict(self, frame: pd.DataFrame) -> list[Any]:
        """One call for the whole batch; returns plain Python values, one per row."""
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


# --------------------------------------------------------------------------- checksum


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def member_path(name: str) -> PurePosixPath | None:
    """`name` as a path inside an artifact, or None if it is absolute, empty or climbs out of it.

    One rule for S3 keys under a model prefix and for every path an MLmodel file names: plain
    segments separated by `/`; no empty, `.` or `..` segment, no backslash, no NUL.
    """
    parts = name.split("/")
    if not name or "\\" in name or "\x00" in name or any(part in ("", ".", "..") for part in parts):
        return None
    return PurePosixPath(*parts)


def _inside(root: Path, name: str, what: str) -> Path:
    """root/name, refused unless it stays under root (also after resolving links)."""
    member = member_path(name)
    path = root.joinpath(*member.parts) if member is not None else None
    if path is None or not path.resolve().is_relative_to(root.resolve()):
        raise UnsafeArtifactError(f"{what} {name!r} is not a path inside the model artifact; refusing to load")
    return path


def _regular_files(root: Path) -> list[tuple[Path, str]]:
    """Every file under root as (path, relative key); a symlink or special file inside refuses the artifact.

    A symlinked folder would bring in files the manifest never lists (rglob does not follow it), and
    a symlinked file could change under a verified name: neither is part of a pinned artifact.
    """
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in (*dirnames, *filenames):
            path = here / name
            mode = path.lstat().st_mode
            if stat.S_ISDIR(mode):
                continue
            key = path.relative_to(root).as_posix()
            if stat.S_ISLNK(mode):
                raise UnsafeArtifactError(f"model artifact {root} holds a symlink, {key}; copy the file in instead")
            if not stat.S_ISREG(mode):
                raise UnsafeArtifactError(f"model artifact {root} holds {key}, which is not a regular file")
            out.append((path, key))
    return sorted(out, key=lambda item: item[1])


def artifact_digest(path: str | Path) -> tuple[str, list[tuple[Path, str, str]]]:
    """The artifact's sha256 and its files as (path, relative key, sha256), sorted by key.

    A file's digest is its own; a directory's is that of its sorted manifest of file digests (see
    module doc). Publishing records the same per-file digests, so each file is read once.
    """
    path = Path(path)
    if path.is_file():
        digest = file_sha256(path)
        return digest, [(path, path.name, digest)]
    if not path.is_dir():
        raise ModelNotFoundError(f"no model artifact at {path}")
    files = [(p, key, file_sha256(p)) for p, key in _regular_files(path)]
    if not files:
        raise ModelNotFoundError(f"model directory {path} is empty")
    manifest = "\n".join(f"{digest}  {key}" for _, key, digest in files)
    return hashlib.sha256(manifest.encode()).hexdigest(), files


@dataclass(frozen=True, slots=True)
class Artifact:
    """A verified artifact: the loader opens files through `file()`, so only what the digest covered."""

    root: Path
    sha256: str
    keys: frozenset[str]

    @classmethod
    def verify(cls, path: Path) -> Artifact:
        digest, files = artifact_digest(path)
        return cls(path, digest, frozenset(key for _, key, _ in files))

    def file(self, name: str, what: str) -> Path | None:
        """The verified file `name` of a directory artifact; None if there is none; refused if it escapes."""
        path = _inside(self.root, name, what)
        return path if path.relative_to(self.root).as_posix() in self.keys else None


def artifact_sha256(path: str | Path) -> str:
    """sha256 of a file, or of a directory's sorted manifest of file digests (see module doc)."""
    return artifact_digest(path)[0]


# --------------------------------------------------------------------------- fetching


def s3_client() -> Any:
    """A boto3 S3 client with standard retries, honouring the endpoint variables (moto, LocalStack, real S3)."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(retries={"mode": "standard", "max_attempts": 5}))


def _denied(uri: str) -> str:
    return (
        f"access denied reading {uri}: the function role needs s3:GetObject on the key (a file), or "
        "s3:ListBucket on the prefix and s3:GetObject under it (an MLflow directory)"
    )


class LoaderImports:
    """Import the model loaders (scikit-learn, skops: ~1.5 s) on a thread while the artifact downloads.

    Safe only while no other thread imports: two threads importing one package can deadlock on its
    circular imports, and CPython breaks the deadlock by handing one of them a partially initialised
    module ("cannot import name '_MetadataRequester' from partially initialized module"). So `fetch`
    starts it after the first S3 response (from then on a download imports nothing; a test checks
    it) and `load_model` joins it before loading anything, also on errors: it never outlives the load.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None and "skops.io" not in sys.modules:
            self._thread = threading.Thread(target=_import_loaders, name="model-loader-imports", daemon=True)
            self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def _import_loaders() -> None:
    with contextlib.suppress(ImportError):  # not installed: the loader says so when it needs it
        import skops.io  # noqa: F401


def fetch(
    uri: str, cache_dir: str, s3: Any | None = None, *, on_first_response: Callable[[], None] | None = None
) -> tuple[Path, str | None]:
    """Return a local path to the artifact (downloading it once) and the S3 version id if any.

    `on_first_response` is called once S3 has answered, when what is left is pure network and disk.
    """
    responded = on_first_response or (lambda: None)
    loc = ModelLocation.parse(uri)
    if loc.scheme == "file":
        path = Path(loc.key)
        if not path.exists():
            raise ModelNotFoundError(f"model artifact {uri} does not exist")
        return path, None

    from botocore.exceptions import ClientError

    s3 = s3 or s3_client()
    target = Path(cache_dir) / hashlib.sha256(uri.encode()).hexdigest()[:24]
    if (target / _COMPLETE).exists():
        marker = (target / _COMPLETE).read_text().split("\n")
        return target / marker[0], marker[1] or None
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="dl-", dir=target.parent))
    try:
        version: str | None = None
        denied = False
        extra = {"VersionId": loc.version_id} if loc.version_id else {}
        head = None
        try:
            if not loc.key.endswith("/"):
                head = s3.head_object(Bucket=loc.bucket, Key=loc.key, **extra)
                responded()
        except ClientError as exc:
            responded()
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NotFound"):
                head = None
            elif code in ("NoSuchBucket",):
                raise ModelNotFoundError(f"model bucket {loc.bucket!r} does not exist ({uri})") from None
            elif code in ("403", "AccessDenied", "Forbidden") and not loc.version_id:
                # S3 answers 403, not 404, for a missing key when the caller may not list it: the usual
                # case for an MLflow directory named without its trailing slash. Try it as a prefix.
                head, denied = None, True
            elif code in ("403", "AccessDenied", "Forbidden"):
                raise ModelNotFoundError(_denied(uri)) from None
            else:
                raise ModelStoreError(f"cannot read {uri}: {exc}") from exc
        if head is not None:
            name = Path(loc.key).name
            rel = f"file/{name}"  # the marker sits beside, never inside, what is hashed
            dest = _inside(staging / "file", name, "S3 key")
            dest.parent.mkdir(parents=True)
            s3.download_file(loc.bucket, loc.key, str(dest), ExtraArgs=extra or None)
            version = head.get("VersionId") or loc.version_id
        else:
            prefix = loc.key.rstrip("/") + "/"
            rel = "model"
            try:
                keys = []
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=prefix):
                    responded()
                    keys += [obj["Key"] for obj in page.get("Contents", []) if not obj["Key"].endswith("/")]
                # Every key is placed under the cache, or the artifact refused, before anything is written.
                dests = [(key, _inside(staging / rel, key[len(prefix) :], f"S3 key {key!r}: name")) for key in keys]
                for key, dest in dests:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    s3.download_file(loc.bucket, key, str(dest))
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code == "NoSuchBucket":
                    raise ModelNotFoundError(f"model bucket {loc.bucket!r} does not exist ({uri})") from None
                if code in ("403", "AccessDenied", "Forbidden"):
                    raise ModelNotFoundError(_denied(uri)) from None
                raise ModelStoreError(f"cannot list {uri}: {exc}") from exc
            except (NotADirectoryError, FileExistsError, IsADirectoryError):
                raise UnsafeArtifactError(f"{uri} has a key that is both a file and a folder") from None
            if not keys and denied:
                raise ModelNotFoundError(_denied(uri))
            if not keys:
                raise ModelNotFoundError(f"no model at {uri}: no object with that key and no files under that prefix")
        (staging / _COMPLETE).write_text(f"{rel}\n{version or ''}")
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        staging.replace(target)
        return target / rel, version
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


# --------------------------------------------------------------------------- loading


def _read_mlmodel(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load((path / MLMODEL).read_text())
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
    loaders = LoaderImports()
    try:
        local, s3_version = fetch(settings.model_uri, settings.model_cache_dir, s3, on_first_response=loaders.start)
    finally:
        loaders.join()
    artifact = Artifact.verify(local)
    actual = artifact.sha256
    if settings.model_sha256 and actual != settings.model_sha256:
        raise ChecksumMismatchError(
            f"checksum mismatch for {settings.model_uri}: MODEL_SHA256 is {settings.model_sha256} but the "
            f"artifact is {actual}; nothing will be scored. Publish again or fix MODEL_SHA256"
        )
    trusted = list(settings.model_trusted_types)
    pinned = settings.model_sha256 is not None
    predict_fn = None
    env_warnings: list[str] = []
    mlmodel: dict[str, Any] = {}
    signature: Signature | None = None
    if local.is_dir():
        if MLMODEL not in artifact.keys:
            raise ModelLoadError(f"{settings.model_uri} is a directory without an MLmodel file")
        from lambda_fn.model_env import check_model_env  # before unpickling: a refusal is a ModelLoadError

        env_warnings = check_model_env(
            local, allow_mismatch=settings.model_allow_env_mismatch, where=settings.model_uri
        )
        estimator, fmt, signature, mlmodel, predict_fn = _load_mlflow_dir(
            artifact, trusted, pinned, settings.allow_unpinned_pickle
        )
    else:
        estimator, fmt = _load_file(local, trusted, pinned, settings.allow_unpinned_pickle)
    if settings.input_schema:
        signature = Signature.from_columns(settings.input_schema)
    if predict_fn is None and not hasattr(estimator, "predict"):
        raise ModelLoadError(f"loaded object {type(estimator).__name__} has no predict method")
    names = getattr(estimator, "feature_names_in_", None)
    meta = mlmodel.get("metadata") or {}
    name = settings.model_name or meta.get("name") or _default_name(settings.model_uri)
    version = (
        settings.model_version
        or (str(meta["version"]) if meta.get("version") is not None else None)
        or s3_version
        or mlmodel.get("run_id")
        or actual[:12]
    )
    model = LoadedModel(
        name=str(name),
        version=str(version),
        sha256=actual,
        uri=settings.model_uri,
        format=fmt,
        signature=signature,
        load_seconds=0.0,
        loaded_at=0.0,
        estimator=estimator,
        feature_names=[str(n) for n in names] if names is not None else None,
        _predict=predict_fn,
        env_warnings=env_warnings,
    )
    if local.is_dir():
        _self_check(artifact, mlmodel, model)
    model.load_seconds, model.loaded_at = time.perf_counter() - started, time.time()  # the self-check included
    return model


def _self_check(artifact: Artifact, mlmodel: dict[str, Any], model: LoadedModel) -> None:
    """Score the model's own input example once: a model that cannot is broken, not fed poison.

    This is what lets the scorer treat later row failures as bad rows (dead-lettered, 422 in the API)
    rather than as a broken deployment (batch retried, 500), from the first request on.
    """
    info = mlmodel.get("saved_input_example_info") or {}
    example = artifact.file(str(info.get("artifact_path", "input_example.json")), "MLmodel input example")
    if info.get("type", "dataframe") != "dataframe" or example is None:
        return
    import json

    import pandas as pd

    try:
        raw = json.loads(example.read_text())
        if isinstance(raw, dict) and "columns" in raw and "data" in raw:
            frame = pd.DataFrame(raw["data"], columns=raw["columns"])
        else:
            frame = pd.DataFrame(raw)
    except (ValueError, TypeError, OSError):
        return  # an example we cannot read proves nothing either way
    from lambda_fn.scoring import ModelBatchError, self_check  # deferred: only a model with an example needs it

    try:
        self_check(model, frame)  # scored: the example is the model's reference row from now on
    except ModelBatchError as exc:
        raise ModelLoadError(f"model loaded but {exc} ({example.name})") from None


def _default_name(uri: str) -> str:
    stem = Path(urlparse(uri).path.rstrip("/")).name
    for suffix in (SKOPS_SUFFIX, *PICKLE_SUFFIXES):
        stem = stem.removesuffix(suffix)
    return stem or "model"
