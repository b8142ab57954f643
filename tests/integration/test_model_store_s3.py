"""S3 keys of a model prefix are placed under the cache or refused before anything is written (moto S3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lambda_fn.config import settings_from
from lambda_fn.model_store import UnsafeArtifactError, artifact_sha256, fetch, load_model
from tests.integration.conftest import BUCKET, Aws


class CountingS3:
    """The real (moto) client, counting downloads (either way of reading an object's body): a refusal must come
    before the first one."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.downloads: list[str] = []

    def download_file(self, bucket: str, key: str, filename: str, **kwargs: Any) -> None:
        self.downloads.append(key)
        self._client.download_file(bucket, key, filename, **kwargs)

    def get_object(self, **kwargs: Any) -> Any:
        self.downloads.append(kwargs["Key"])
        return self._client.get_object(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    "rest",
    ["../../../escaped.txt", "sub/../../../../escaped.txt", "/escaped.txt", "./escaped.txt", "a//escaped.txt"],
)
def test_a_key_that_would_land_outside_the_cache_refuses_the_artifact_before_any_write(
    aws: Aws, tiny_mlflow_dir: Path, tmp_path: Path, rest: str
) -> None:
    uri = aws.upload_dir(tiny_mlflow_dir, "models/tiny/v2")
    aws.s3.put_object(Bucket=BUCKET, Key=f"models/tiny/v2/{rest}", Body=b"import os  # anything")
    cache = tmp_path / "deep" / "er" / "cache"
    s3 = CountingS3(aws.s3)
    settings = settings_from(
        {"MODEL_URI": uri, "MODEL_SHA256": artifact_sha256(tiny_mlflow_dir), "MODEL_CACHE_DIR": str(cache)}
    )
    with pytest.raises(UnsafeArtifactError, match="not a path inside the model artifact"):
        load_model(settings, s3)
    assert s3.downloads == []
    assert _files(tmp_path) == [], "nothing written anywhere: not outside the cache, not inside it"


def test_a_single_file_key_that_names_a_parent_is_refused(aws: Aws, tmp_path: Path) -> None:
    aws.s3.put_object(Bucket=BUCKET, Key="models/..", Body=b"x")
    s3 = CountingS3(aws.s3)
    with pytest.raises(UnsafeArtifactError):
        fetch(f"s3://{BUCKET}/models/..", str(tmp_path / "cache"), s3)
    assert s3.downloads == [] and _files(tmp_path) == []


def test_a_key_that_is_both_a_file_and_a_folder_is_refused(aws: Aws, tiny_mlflow_dir: Path, tmp_path: Path) -> None:
    uri = aws.upload_dir(tiny_mlflow_dir, "models/tiny/v3")
    aws.s3.put_object(Bucket=BUCKET, Key="models/tiny/v3/MLmodel/inner", Body=b"x")
    with pytest.raises(UnsafeArtifactError, match="both a file and a folder"):
        fetch(uri, str(tmp_path / "cache"), aws.s3)


def test_the_cache_marker_sits_beside_the_artifact_never_inside_it(
    aws: Aws, tiny_mlflow_dir: Path, tmp_path: Path
) -> None:
    """A key named like the marker is an ordinary file of the artifact, and counted in its digest."""
    uri = aws.upload_dir(tiny_mlflow_dir, "models/tiny/v4")
    aws.s3.put_object(Bucket=BUCKET, Key="models/tiny/v4/.complete", Body=b"model\n")
    local, _ = fetch(uri, str(tmp_path / "cache"), aws.s3)
    assert (local / ".complete").read_bytes() == b"model\n"
    assert artifact_sha256(local) != artifact_sha256(tiny_mlflow_dir)
    again, _ = fetch(uri, str(tmp_path / "cache"), aws.s3)  # served from the cache, same place
    assert again == local


def test_each_file_of_a_directory_is_read_with_one_get_and_verified_from_disk(
    aws: Aws, tiny_mlflow_dir: Path, tmp_path: Path
) -> None:
    """One GET per file (no transfer manager's HEAD and thread pool per file); the digest is of what landed."""
    uri = aws.upload_dir(tiny_mlflow_dir, "models/tiny/v5")
    s3 = CountingS3(aws.s3)
    local, _ = fetch(uri, str(tmp_path / "cache"), s3)
    assert sorted(s3.downloads) == [f"models/tiny/v5/{name}" for name in _files(tiny_mlflow_dir)]
    assert _files(local) == _files(tiny_mlflow_dir)
    assert artifact_sha256(local) == artifact_sha256(tiny_mlflow_dir)


class _BreaksOff:
    """A response body that fails after its first chunk, as a connection reset mid-download does."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def iter_chunks(self, size: int) -> Any:
        from botocore.exceptions import ResponseStreamingError

        yield self._body.read(8)
        raise ResponseStreamingError(error="connection reset by peer")

    def close(self) -> None:
        self._body.close()


class FlakyS3(CountingS3):
    """Every GET of `flaky` breaks off mid-body, `failures` times."""

    def __init__(self, client: Any, flaky: str, failures: int) -> None:
        super().__init__(client)
        self.flaky, self.failures = flaky, failures

    def get_object(self, **kwargs: Any) -> Any:
        response = super().get_object(**kwargs)
        if kwargs["Key"] == self.flaky and self.failures:
            self.failures -= 1
            response["Body"] = _BreaksOff(response["Body"])
        return response


def test_a_body_that_breaks_off_mid_download_is_fetched_again_whole(
    aws: Aws, tiny_mlflow_dir: Path, tmp_path: Path
) -> None:
    uri = aws.upload_dir(tiny_mlflow_dir, "models/tiny/v6")
    s3 = FlakyS3(aws.s3, "models/tiny/v6/MLmodel", failures=2)
    local, _ = fetch(uri, str(tmp_path / "cache"), s3)
    assert s3.downloads.count("models/tiny/v6/MLmodel") == 3
    assert (local / "MLmodel").read_bytes() == (tiny_mlflow_dir / "MLmodel").read_bytes()
    assert artifact_sha256(local) == artifact_sha256(tiny_mlflow_dir)


def test_a_body_that_keeps_breaking_off_fails_the_fetch_and_caches_nothing(
    aws: Aws, tiny_mlflow_dir: Path, tmp_path: Path
) -> None:
    from botocore.exceptions import ResponseStreamingError

    uri = aws.upload_dir(tiny_mlflow_dir, "models/tiny/v7")
    s3 = FlakyS3(aws.s3, "models/tiny/v7/MLmodel", failures=99)
    with pytest.raises(ResponseStreamingError):
        fetch(uri, str(tmp_path / "cache"), s3)
    assert s3.downloads.count("models/tiny/v7/MLmodel") == 3
    assert _files(tmp_path) == [], "no partial cache entry, no staging folder left behind"
