"""Fetch a model artifact into the local cache: a local path as it is, an S3 object or prefix downloaded once.

A download lands in a staging folder beside the cache entry and replaces it whole, with a marker file
(`.complete`: the artifact's relative path and S3 version id) written last; a cache entry without the
marker is never used. Every S3 key of a prefix is placed inside the staging folder, or the artifact
refused, before anything is written (`lambda_fn.model_artifact.path_inside`).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import parse_qs, urlparse

from lambda_fn.model_artifact import path_inside
from lambda_fn.model_errors import ModelNotFoundError, ModelStoreError, UnsafeArtifactError

if TYPE_CHECKING:
    from botocore.exceptions import ClientError

_COMPLETE = ".complete"
_CHUNK = 1 << 20
_STREAM_ATTEMPTS = 3  # as s3transfer's download_file retries a body that breaks off
_ACCESS_DENIED = ("403", "AccessDenied", "Forbidden")


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


def fetch(uri: str, cache_dir: str, s3: Any | None = None) -> tuple[Path, str | None]:
    """Return a local path to the artifact (downloading it once) and the S3 version id if any."""
    loc = ModelLocation.parse(uri)
    if loc.scheme == "file":
        return _local_path(loc, uri), None

    s3 = s3 or s3_client()
    target = Path(cache_dir) / hashlib.sha256(uri.encode()).hexdigest()[:24]
    cached = _cached(target)
    if cached is not None:
        return cached
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="dl-", dir=target.parent))
    try:
        rel, version = _download(s3, loc, uri, staging)
        _complete(staging, target, rel, version)
        return target / rel, version
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _local_path(loc: ModelLocation, uri: str) -> Path:
    path = Path(loc.key)
    if not path.exists():
        raise ModelNotFoundError(f"model artifact {uri} does not exist")
    return path


def _cached(target: Path) -> tuple[Path, str | None] | None:
    """The artifact of a complete cache entry and its S3 version id; None if there is none."""
    if not (target / _COMPLETE).exists():
        return None
    marker = (target / _COMPLETE).read_text().split("\n")
    return target / marker[0], marker[1] or None


def _complete(staging: Path, target: Path, rel: str, version: str | None) -> None:
    """Mark the staged download complete and put it in place of the cache entry."""
    (staging / _COMPLETE).write_text(f"{rel}\n{version or ''}")
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    staging.replace(target)


def _download(s3: Any, loc: ModelLocation, uri: str, staging: Path) -> tuple[str, str | None]:
    """Download the object at the key, else every object under it as a prefix, into `staging`.

    Returns the artifact's path relative to `staging` and the S3 version id (an object's only).
    """
    extra = {"VersionId": loc.version_id} if loc.version_id else {}
    head, denied = _head(s3, loc, uri, extra)
    if head is not None:
        return _download_object(s3, loc, staging, extra, head)
    return _download_prefix(s3, loc, uri, staging, denied), None


def _head(s3: Any, loc: ModelLocation, uri: str, extra: dict[str, str]) -> tuple[dict[str, Any] | None, bool]:
    """HEAD of the key: (its response, False) for an object; (None, denied) when the key is to be read as a prefix.

    `denied` says S3 refused the HEAD with 403 and the prefix is tried only for that reason.
    """
    from botocore.exceptions import ClientError

    if loc.key.endswith("/"):
        return None, False
    try:
        head: dict[str, Any] = s3.head_object(Bucket=loc.bucket, Key=loc.key, **extra)
    except ClientError as exc:
        return None, _head_refused(exc, loc, uri)
    return head, False


def _head_refused(exc: ClientError, loc: ModelLocation, uri: str) -> bool:
    """Read a refused HEAD: False for no such key, True for a 403 that may hide a prefix; raise otherwise."""
    code = exc.response.get("Error", {}).get("Code", "")
    if code in ("404", "NoSuchKey", "NotFound"):
        return False
    if code in ("NoSuchBucket",):
        raise ModelNotFoundError(f"model bucket {loc.bucket!r} does not exist ({uri})") from None
    if code in _ACCESS_DENIED and not loc.version_id:
        # S3 answers 403, not 404, for a missing key when the caller may not list it: the usual
        # case for an MLflow directory named without its trailing slash. Try it as a prefix.
        return True
    if code in _ACCESS_DENIED:
        raise ModelNotFoundError(_denied(uri)) from None
    raise ModelStoreError(f"cannot read {uri}: {exc}") from exc


def _download_object(
    s3: Any, loc: ModelLocation, staging: Path, extra: dict[str, str], head: dict[str, Any]
) -> tuple[str, str | None]:
    name = Path(loc.key).name
    rel = f"file/{name}"  # the marker sits beside, never inside, what is hashed
    dest = path_inside(staging / "file", name, "S3 key")
    dest.parent.mkdir(parents=True)
    _get_to_file(s3, loc.bucket, loc.key, dest, extra)
    return rel, head.get("VersionId") or loc.version_id


def _download_prefix(s3: Any, loc: ModelLocation, uri: str, staging: Path, denied: bool) -> str:
    """Every object under the key as a prefix (an MLflow directory); returns the artifact's relative path."""
    from botocore.exceptions import ClientError

    prefix = loc.key.rstrip("/") + "/"
    rel = "model"
    try:
        keys = _list_keys(s3, loc.bucket, prefix)
        # Every key is placed under the cache, or the artifact refused, before anything is written.
        dests = [(key, path_inside(staging / rel, key[len(prefix) :], f"S3 key {key!r}: name")) for key in keys]
        for key, dest in dests:
            dest.parent.mkdir(parents=True, exist_ok=True)
            _get_to_file(s3, loc.bucket, key, dest, {})
    except ClientError as exc:
        _refuse_listing(exc, loc, uri)
    except (NotADirectoryError, FileExistsError, IsADirectoryError):
        raise UnsafeArtifactError(f"{uri} has a key that is both a file and a folder") from None
    if not keys and denied:
        raise ModelNotFoundError(_denied(uri))
    if not keys:
        raise ModelNotFoundError(f"no model at {uri}: no object with that key and no files under that prefix")
    return rel


def _get_to_file(s3: Any, bucket: str, key: str, dest: Path, extra: dict[str, str]) -> None:
    """One GET streamed to `dest` in 1 MiB chunks; a body cut off mid-stream is fetched again from the start.

    No transfer manager: `download_file` spends a HEAD request, a thread pool and its futures on every file,
    which for a model directory's dozen small files cost more CPU than the bytes. What is written is hashed
    afterwards from disk (`Artifact.verify`), so the digest covers exactly the files the loader opens.
    """
    from botocore.exceptions import IncompleteReadError, ReadTimeoutError, ResponseStreamingError

    retryable = (IncompleteReadError, ReadTimeoutError, ResponseStreamingError, ConnectionError, TimeoutError)
    for attempt in range(1, _STREAM_ATTEMPTS + 1):
        body = s3.get_object(Bucket=bucket, Key=key, **extra)["Body"]
        try:
            with dest.open("wb") as fh:
                for chunk in body.iter_chunks(_CHUNK):
                    fh.write(chunk)
            return
        except retryable:
            if attempt == _STREAM_ATTEMPTS:
                raise
        finally:
            body.close()


def _list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    """The object keys under `prefix` (folder markers, keys ending in `/`, left out)."""
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [obj["Key"] for obj in page.get("Contents", []) if not obj["Key"].endswith("/")]
    return keys


def _refuse_listing(exc: ClientError, loc: ModelLocation, uri: str) -> NoReturn:
    code = exc.response.get("Error", {}).get("Code", "")
    if code == "NoSuchBucket":
        raise ModelNotFoundError(f"model bucket {loc.bucket!r} does not exist ({uri})") from None
    if code in _ACCESS_DENIED:
        raise ModelNotFoundError(_denied(uri)) from None
    raise ModelStoreError(f"cannot list {uri}: {exc}") from exc
