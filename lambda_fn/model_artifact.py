"""What a pinned model artifact is: its sha256, the paths inside it, and the verified view a loader opens.

The sha256 of a file is its own. The sha256 of a directory is the sha256 of its manifest: one line
`<sha256 of file>  <relative path>` per file, sorted by path, joined with newlines. `artifact_sha256()`
computes both forms.

The digest identifies the model's content, however it was obtained: `NOT_CONTENT` names the files MLflow
writes on download to record how the model was referenced (`registered_model_meta`: `models:/m/1` and
`models:/m@champion` write different ones; a `runs:/` download writes none). They are left out of the
manifest, so `build/model`, `models:/m/1`, `@champion` and `runs:/...` of one model have one sha256, and,
being outside the verified manifest, they are never opened by the loader (`Artifact.file` refuses them; MLflow
itself only ever writes that file, it never reads it back).

The pin covers exactly what is loaded (loading a pickle runs code): an artifact holds regular files only
(a symlink or special file inside it is refused, so nothing is reached that the manifest does not
list); every S3 key is placed under the cache or refused before anything is written (`path_inside`, used by
`lambda_fn.model_fetch`); and the loader opens only files of the verified manifest (`Artifact.file`), by
relative names that stay inside the artifact.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lambda_fn.model_errors import ModelNotFoundError, UnsafeArtifactError

# Top-level files of a model directory that are not the model's content (see module doc).
NOT_CONTENT = frozenset({"registered_model_meta"})


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


def path_inside(root: Path, name: str, what: str) -> Path:
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
    files = [(p, key, file_sha256(p)) for p, key in _regular_files(path) if key not in NOT_CONTENT]
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
        path = path_inside(self.root, name, what)
        return path if path.relative_to(self.root).as_posix() in self.keys else None


def artifact_sha256(path: str | Path) -> str:
    """sha256 of a file, or of a directory's sorted manifest of file digests (see module doc)."""
    return artifact_digest(path)[0]
