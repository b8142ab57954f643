"""Publish a model from MLflow into the model bucket, and promote registry versions with aliases.

`publish()` takes any MLflow model URI (`models:/name@alias`, `models:/name/3`, `runs:/<run>/model`,
`models:/m-<id>`) or a local MLflow directory or model file, downloads it with mlflow, computes the
artifact sha256 the function verifies at load (`lambda_fn.model_store.artifact_sha256`), and copies it
under a content-addressed key:

    s3://<bucket>/<prefix>/<name>/<sha256>/model/...      the artifact (MODEL_URI points here)
    s3://<bucket>/<prefix>/<name>/<sha256>/release.json   the release manifest
    s3://<bucket>/<prefix>/<name>/<sha256>/reference.json the monitoring reference, when it is not a file of
                                                          the model directory (model/reference.json) already

The manifest pins the reference like the model: `"reference": {"uri", "sha256", "rows", "features",
"origin"}` (or null: the release has no monitoring baseline, and publish warns). The monitor function is
given that uri and sha256 (MONITOR_REFERENCE_URI, MONITOR_REFERENCE_SHA256) and refuses any other content.
It also records the release's smoke example (`"smoke": {"inputs", "predictions", "tolerance"}`, or null for a
model without an input example: `servingkit.publish_smoke`), which the pre-traffic hook replays against the
new function version before any traffic shifts.

A key names exactly one content, so a release is never changed in place: an existing object with other
content makes `publish` refuse (`PublishConflictError`); publishing the same content again is a no-op. The
running function reads only S3 and never needs the MLflow tracking server. The S3 client is plain
boto3, so the emulator is reached through the SDK's standard `AWS_ENDPOINT_URL_S3` variable.
"""

from __future__ import annotations

import json
import re
import shlex
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from infra.topology import Ctx
from lambda_fn.model_env import SKLEARN, Runtime, compare, model_format, pinned_version, read_recorded
from lambda_fn.model_errors import MLMODEL
from lambda_fn.model_store import artifact_digest, artifact_sha256, fetch, s3_client
from lambda_fn.monitoring.quality_job import METRICS_FILE, read_metrics_file
from lambda_fn.monitoring.quality_job import training_metrics as qj_training_metrics
from lambda_fn.monitoring.reference import ReferenceFormatError
from lambda_fn.monitoring.release_reference import REFERENCE_FILE, load_reference
from lambda_fn.monitoring.s3_store import read_s3_uri
from lambda_fn.schema import SchemaError, Signature
from servingkit.image.platform import REQUIREMENTS, base_image
from servingkit.publish_reference import NO_REFERENCE, ReferenceError, ReleaseReference
from servingkit.publish_reference import find as find_reference
from servingkit.publish_smoke import SmokeError, smoke_example

MANIFEST = "release.json"
MANIFEST_FORMAT = 1
DEFAULT_PREFIX = "models"
ALIASES = ("champion", "challenger")
_SHA_META = "sha256"  # user metadata on each uploaded object: its file digest, for idempotent re-publishing
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


class PublishError(RuntimeError):
    """Publishing cannot proceed; the message says why and what to do."""


class PublishConflictError(PublishError):
    """The content-addressed location already holds different content: releases are immutable."""


@dataclass(frozen=True)
class Source:
    """Where the model came from in MLflow (all optional for a local directory)."""

    uri: str
    registered_model: str | None = None
    registered_version: str | None = None
    alias: str | None = None
    run_id: str | None = None


@dataclass
class PublishResult:
    manifest: dict[str, Any]
    model_uri: str
    manifest_uri: str
    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    already_published: bool = False
    verified: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return str(self.manifest["sha256"])

    def context(self) -> dict[str, str]:
        """CDK context for this release, by the keys infra.topology reads."""
        return {
            Ctx.MODEL_URI: self.model_uri,
            Ctx.MODEL_SHA256: self.sha256,
            Ctx.MODEL_NAME: str(self.manifest["name"]),
            Ctx.MODEL_VERSION: str(self.manifest["version"]),
        }

    def deploy_command(self) -> str:
        return "cdk deploy " + " ".join(f"-c {k}={shlex.quote(v)}" for k, v in self.context().items())


def slug(name: str) -> str:
    """A key-safe form of a model name (registered names may hold spaces or slashes)."""
    out = _SLUG.sub("-", name).strip("-.")
    if not out:
        raise PublishError(f"model name {name!r} has no characters usable in an S3 key; pass --name")
    return out


# --------------------------------------------------------------------------- MLflow side


def resolve_source(uri: str, tracking_uri: str | None = None) -> Source:
    """Registry facts about a models:/ or runs:/ URI (version, alias, run), without downloading."""
    parsed = urlparse(uri)
    if parsed.scheme == "runs":
        run_id = parsed.netloc or parsed.path.strip("/").split("/", 1)[0]
        return Source(uri, run_id=run_id or None)
    if parsed.scheme != "models":
        return Source(uri)
    from mlflow import MlflowClient
    from mlflow.store.artifact.utils.models import _parse_model_uri

    target = _parse_model_uri(uri)
    if target.model_id and not target.name:  # models:/m-<id>: a logged model, not a registry version
        return Source(uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    name = str(target.name)
    try:
        if target.alias:
            mv = client.get_model_version_by_alias(name, target.alias)
        elif target.version:
            mv = client.get_model_version(name, str(target.version))
        else:  # models:/name/latest or models:/name/<stage>
            from mlflow.store.artifact.utils.models import get_model_name_and_version

            name, version = get_model_name_and_version(client, uri)  # type: ignore[no-untyped-call]
            mv = client.get_model_version(name, version)
    except Exception as exc:  # noqa: BLE001 - MLflow raises its own types for every lookup failure
        raise PublishError(f"cannot resolve {uri} in the MLflow registry: {exc}") from None
    return Source(uri, mv.name, str(mv.version), target.alias, mv.run_id)


def _is_local(uri: str) -> bool:
    return urlparse(uri).scheme in ("", "file")


def download(uri: str, dest: Path, tracking_uri: str | None = None) -> Path:
    """A local path to the artifact: the directory or file itself, or mlflow's download into `dest`."""
    if _is_local(uri):
        local = Path(urlparse(uri).path if uri.startswith("file:") else uri)
        if not local.exists():
            raise PublishError(f"{uri} is neither an MLflow model URI nor an existing file or directory")
        return local
    import mlflow.artifacts

    try:
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(dest), tracking_uri=tracking_uri, registry_uri=tracking_uri
        )
    except Exception as exc:  # noqa: BLE001 - MLflow raises its own types for every download failure
        raise PublishError(f"mlflow could not download {uri}: {exc}") from None
    return Path(path)


def _mlmodel(path: Path) -> dict[str, Any]:
    if not (path.is_dir() and (path / MLMODEL).is_file()):
        return {}
    import yaml

    data = yaml.safe_load((path / MLMODEL).read_text())
    return data if isinstance(data, dict) else {}


def _signature(mlmodel: Mapping[str, Any]) -> dict[str, Any] | None:
    try:
        sig = Signature.from_mlmodel(dict(mlmodel))
    except SchemaError:
        sig = None
    if sig is not None:
        return sig.to_dict()
    raw = mlmodel.get("signature")
    return dict(raw) if isinstance(raw, dict) else None


def image_runtime(requirements: Path = REQUIREMENTS) -> Runtime:
    """What the Lambda image will load the model with: the Dockerfile's Python minor, the scikit-learn pin."""
    image = base_image()
    sklearn = pinned_version(requirements.read_text(), SKLEARN)
    return Runtime(
        python=image.platform.python, sklearn=sklearn, label=f"the image ({image.image}, {requirements.name})"
    )


def check_environment(local: Path, allow_mismatch: bool, runtime: Runtime | None = None) -> list[str]:
    """Compare an MLflow directory's recorded Python and scikit-learn with the image's (`lambda_fn.model_env`
    rules, the same the function applies at load); a refusal is a PublishError unless `allow_mismatch`."""
    if not (local.is_dir() and (local / MLMODEL).is_file()):
        return []  # a single model file records no environment
    result = compare(read_recorded(local), runtime or image_runtime(), model_format(local))
    if result.refusals and not allow_mismatch:
        raise PublishError(
            f"the model's environment does not match the image's: {'; '.join(result.refusals)}. Re-save the model "
            "with the image's versions (or change the image), or pass --allow-env-mismatch to publish it anyway"
        )
    return [f"{r} (published anyway: --allow-env-mismatch)" for r in result.refusals] + list(result.warnings)


# --------------------------------------------------------------------------- S3 side


def _existing(s3: Any, bucket: str, prefix: str) -> set[str]:
    from botocore.exceptions import ClientError

    keys: set[str] = set()
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.update(obj["Key"] for obj in page.get("Contents", []))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            raise PublishError(f"bucket {bucket!r} does not exist (the CDK stack exports the model bucket)") from None
        raise PublishError(f"cannot list s3://{bucket}/{prefix}: {exc}") from None
    return keys


def _read_manifest(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise PublishConflictError(f"s3://{bucket}/{key} exists and is not a release manifest; refusing to replace it")
    return data


def _previous_manifest(s3: Any, bucket: str, key: str, sha: str, reference: object) -> dict[str, Any]:
    """The first publication's manifest (it stands), refused when it records another artifact or reference."""
    old = _read_manifest(s3, bucket, key)
    if old.get("sha256") != sha:
        raise PublishConflictError(
            f"s3://{bucket}/{key} records sha256 {old.get('sha256')} but this artifact is {sha}; "
            "releases are immutable, refusing to overwrite"
        )
    recorded = (old.get("reference") or {}).get("sha256")
    if isinstance(reference, Mapping) and recorded != reference["sha256"]:
        raise PublishConflictError(
            f"s3://{bucket}/{key} records reference {recorded or '(none)'} but this one is {reference['sha256']}; "
            "releases are immutable, refusing to change the reference of a published release"
        )
    return old


def _put_file(
    s3: Any, bucket: str, key: str, path: Path, digest: str, existing: set[str], result: PublishResult
) -> None:
    """Upload one file under its key, unless the same content is there; other content is a conflict."""
    if key in existing:
        remote = s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get(_SHA_META)
        if remote != digest:
            raise PublishConflictError(
                f"s3://{bucket}/{key} already exists with different content (sha256 {remote or 'unknown'}, "
                f"this file {digest}); releases are immutable, refusing to overwrite"
            )
        result.unchanged.append(key)
        return
    s3.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {_SHA_META: digest}, "ChecksumAlgorithm": "SHA256"})
    result.uploaded.append(key)


def _refuse_strangers(existing: set[str], expected: set[str], bucket: str, base: str) -> None:
    strangers = sorted(existing - expected)
    if strangers:
        raise PublishConflictError(
            f"s3://{bucket}/{base}/ holds objects that are not part of this artifact ({', '.join(strangers[:5])}); "
            "refusing to publish into it"
        )


def _release_reference(
    local: Path,
    uri: str,
    run_id: str | None,
    tmp: Path,
    tracking_uri: str | None,
    data: Path | None,
    data_args: dict[str, Any],
) -> ReleaseReference | None:
    try:
        return find_reference(
            local,
            run_id=run_id,
            from_registry=not _is_local(uri),
            tracking_uri=tracking_uri,
            workdir=tmp,
            data=data,
            data_args=data_args,
        )
    except ReferenceError as exc:
        raise PublishError(str(exc)) from None


def training_metrics(
    local: Path, run_id: str | None, from_registry: bool, tracking_uri: str | None
) -> tuple[dict[str, float] | None, str | None]:
    """The release's validation metrics (the monitor's quality job compares with them) and where they came from:
    the model directory's metrics.json (`servingkit train` writes it; the model's digest covers it), else the
    MLflow run's metrics for a registry model; (None, None) when neither has MAE / RMSE / accuracy / F1 / AUC."""
    own = local / METRICS_FILE
    if local.is_dir() and own.is_file():
        try:
            found = read_metrics_file(own.read_bytes())
        except ValueError as exc:
            raise PublishError(f"{own}: {exc}") from None
        if found:
            return found, f"the model directory ({METRICS_FILE})"
    if from_registry and run_id:
        from mlflow.tracking import MlflowClient

        try:
            run_metrics = MlflowClient(tracking_uri=tracking_uri).get_run(run_id).data.metrics
        except Exception:  # noqa: BLE001 - no run, no tracking server: the release simply records no metrics
            return None, None
        found = qj_training_metrics(run_metrics.items())
        if found:
            return found, f"the MLflow run {run_id}"
    return None, None


@dataclass(frozen=True)
class _Layout:
    """Where one artifact goes: its content-addressed base, the model's keys, the manifest's key."""

    bucket: str
    base: str
    artifact_base: str
    model_uri: str
    name: str
    version: str

    @property
    def manifest_key(self) -> str:
        return f"{self.base}/{MANIFEST}"

    def reference_key(self, reference: ReleaseReference | None) -> str | None:
        """The key to upload the reference to (None: there is none, or it is a file of the model already)."""
        return None if reference is None or reference.in_model else f"{self.base}/{REFERENCE_FILE}"

    def reference_uri(self, reference: ReleaseReference) -> str:
        key = self.reference_key(reference) or f"{self.artifact_base}/{REFERENCE_FILE}"
        return f"s3://{self.bucket}/{key}"


def _layout(
    bucket: str, prefix: str, local: Path, files: list[tuple[Path, str, str]], sha: str, names: tuple[str, str]
) -> _Layout:
    base = f"{prefix.strip('/')}/{slug(names[0])}/{sha}"
    if local.is_dir():
        return _Layout(bucket, base, f"{base}/model", f"s3://{bucket}/{base}/model", *names)
    return _Layout(bucket, base, base, f"s3://{bucket}/{base}/{files[0][1]}", *names)


def _manifest(
    layout: _Layout,
    sha: str,
    source: Source,
    run_id: str | None,
    mlmodel: Mapping[str, Any],
    files: list[tuple[Path, str, str]],
    reference: ReleaseReference | None,
    smoke: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "name": layout.name,
        "version": layout.version,
        "sha256": sha,
        "model_uri": layout.model_uri,
        "signature": _signature(mlmodel),
        "flavors": sorted((mlmodel.get("flavors") or {}).keys()),
        "source": {
            "uri": source.uri,
            "registered_model": source.registered_model,
            "registered_version": source.registered_version,
            "alias": source.alias,
            "run_id": run_id,
        },
        "files": [{"path": rel, "size": p.stat().st_size, "sha256": digest} for p, rel, digest in files],
        "reference": reference.entry(layout.reference_uri(reference)) if reference else None,
        "smoke": smoke,  # the pre-traffic hook's example and expected predictions (servingkit.publish_smoke)
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _write_release(
    s3: Any,
    layout: _Layout,
    files: list[tuple[Path, str, str]],
    reference: ReleaseReference | None,
    result: PublishResult,
    tmp: Path,
) -> None:
    """Upload what is missing (refusing other content under the release's keys), the manifest last."""
    bucket, base, manifest_key = layout.bucket, layout.base, layout.manifest_key
    existing = _existing(s3, bucket, base + "/")
    if manifest_key in existing:
        result.manifest = _previous_manifest(s3, bucket, manifest_key, result.sha256, result.manifest["reference"])
        result.already_published = True
    ref_key = layout.reference_key(reference)
    expected = {f"{layout.artifact_base}/{rel}" for _, rel, _ in files} | {manifest_key}
    _refuse_strangers(existing, expected | ({ref_key} if ref_key else set()), bucket, base)
    for path, rel, digest in files:
        _put_file(s3, bucket, f"{layout.artifact_base}/{rel}", path, digest, existing, result)
    if ref_key and reference is not None:
        (tmp / REFERENCE_FILE).write_bytes(reference.body)
        _put_file(s3, bucket, ref_key, tmp / REFERENCE_FILE, reference.sha256, existing, result)
    if not result.already_published:
        # Written last: a manifest means the whole artifact is in place.
        s3.put_object(
            Bucket=bucket,
            Key=manifest_key,
            Body=(json.dumps(result.manifest, indent=2) + "\n").encode(),
            ContentType="application/json",
        )


def publish(
    uri: str,
    bucket: str,
    *,
    prefix: str = DEFAULT_PREFIX,
    name: str | None = None,
    version: str | None = None,
    tracking_uri: str | None = None,
    s3: Any | None = None,
    verify: bool = True,
    tag_registry: bool = True,
    allow_env_mismatch: bool = False,
    reference_data: Path | None = None,
) -> PublishResult:
    """Copy the model at `uri` into the bucket under its sha256, with its monitoring reference, and write its
    release manifest.

    Before anything is written, the model's recorded Python and scikit-learn are compared with the image's
    (`check_environment`): a mismatch the function would refuse at load is refused here too. The reference
    (`servingkit.publish_reference`: `reference_data`, else the artifact's reference.json, else the MLflow
    run's) is pinned in the manifest by its sha256 (`reference`), or the manifest says `"reference": null`."""
    s3 = s3 or s3_client()
    source = resolve_source(uri, tracking_uri)
    with tempfile.TemporaryDirectory(prefix="publish-") as tmp:
        local = download(uri, Path(tmp) / "download", tracking_uri)
        env_warnings = check_environment(local, allow_env_mismatch)
        sha, files = artifact_digest(local)
        mlmodel = _mlmodel(local)
        meta = mlmodel.get("metadata") or {}
        run_id = source.run_id or mlmodel.get("run_id")
        model_name = str(name or source.registered_model or meta.get("name") or local.stem)
        model_version = str(version or source.registered_version or (run_id[:12] if run_id else sha[:12]))
        layout = _layout(bucket, prefix, local, files, sha, (model_name, model_version))
        data_args = {
            "sha256": sha,
            "columns": _columns(mlmodel),
            "name": model_name,
            "allow_env_mismatch": allow_env_mismatch,
        }
        reference = _release_reference(local, uri, run_id, Path(tmp), tracking_uri, reference_data, data_args)
        try:
            smoke = smoke_example(local, sha, cache=Path(tmp) / "smoke", allow_env_mismatch=allow_env_mismatch)
        except SmokeError as exc:
            raise PublishError(str(exc)) from None
        manifest = _manifest(layout, sha, source, run_id, mlmodel, files, reference, smoke)
        manifest["metrics"], manifest["metrics_origin"] = training_metrics(
            local, run_id, not _is_local(uri), tracking_uri
        )
        result = PublishResult(
            manifest,
            layout.model_uri,
            f"s3://{bucket}/{layout.manifest_key}",
            warnings=env_warnings + ([] if reference else [NO_REFERENCE]),
        )
        _write_release(s3, layout, files, reference, result, Path(tmp))
        if verify:
            verify_published(layout.model_uri, sha, s3)
            verify_reference_published(result.manifest.get("reference"), s3)
            result.verified = True
    if tag_registry and source.registered_model and source.registered_version:
        result.warnings.extend(_tag_version(source, result, tracking_uri))
    return result


def _columns(mlmodel: Mapping[str, Any]) -> list[str] | None:
    """The signature's column names (what a reference is built on), or None without a column signature."""
    try:
        sig = Signature.from_mlmodel(dict(mlmodel))
    except SchemaError:
        return None
    return sig.names if sig is not None and sig.names else None


def verify_reference_published(entry: Mapping[str, Any] | None, s3: Any | None = None) -> None:
    """Download the release's reference and check it against the sha256 the manifest pins."""
    if not entry:
        return
    try:
        load_reference(str(entry["uri"]), str(entry["sha256"]), lambda u: read_s3_uri(u, s3))
    except ReferenceFormatError as exc:
        raise PublishError(f"verification failed: {exc}") from None


def verify_published(model_uri: str, sha256: str, s3: Any | None = None) -> None:
    """Download what the function will download and check the digest it will check."""
    with tempfile.TemporaryDirectory(prefix="verify-") as cache:
        local, _ = fetch(model_uri, cache, s3)
        actual = artifact_sha256(local)
    if actual != sha256:
        raise PublishError(f"verification failed: {model_uri} has sha256 {actual}, expected {sha256}")


def _tag_version(source: Source, result: PublishResult, tracking_uri: str | None) -> list[str]:
    """Record where the release lives on the registry version; a failure is a warning, not an error."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    assert source.registered_model and source.registered_version
    try:
        client.set_model_version_tag(
            source.registered_model, source.registered_version, "servingkit.model_uri", result.model_uri
        )
        client.set_model_version_tag(
            source.registered_model, source.registered_version, "servingkit.sha256", result.sha256
        )
    except Exception as exc:  # noqa: BLE001 - tagging is a convenience; the release is already complete
        return [f"could not tag {source.registered_model} v{source.registered_version} in the registry: {exc}"]
    return []


# --------------------------------------------------------------------------- promotion


def promote(
    name: str, aliases: Mapping[str, str], tracking_uri: str | None = None
) -> dict[str, tuple[str | None, str]]:
    """Point registry aliases (champion / challenger) at versions; returns {alias: (previous, new)}."""
    if not aliases:
        raise PublishError("nothing to promote: give --champion and/or --challenger")
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        model = client.get_registered_model(name)
        for version in aliases.values():
            client.get_model_version(name, str(version))
    except Exception as exc:  # noqa: BLE001 - MLflow raises its own types for every lookup failure
        raise PublishError(f"cannot promote in registered model {name!r}: {exc}") from None
    current = dict(model.aliases or {})
    changes: dict[str, tuple[str | None, str]] = {}
    for alias, version in aliases.items():
        client.set_registered_model_alias(name, alias, str(version))
        previous = current.get(alias)
        changes[alias] = (None if previous is None else str(previous), str(version))
    return changes
