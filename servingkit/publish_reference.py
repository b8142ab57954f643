"""The monitoring reference of a release, found or computed at publish time (`servingkit publish`).

In order: `--reference-data FILE` (CSV, Parquet or JSON lines of the signature's columns: the model, loaded as
the function loads it, predicts on them and the reference is built from both); else the artifact's own
`reference.json` (`servingkit train` writes it into the model directory, so the model's digest covers it);
else the MLflow run's `monitoring/reference.json` (what train logs, for models published from the registry);
else none, and publish warns that monitoring will have no reference for the release. A reference is stored
in canonical JSON (`Reference.to_json`), so its file digest is the digest its profiles record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambda_fn.monitoring.reference import Reference, ReferenceFormatError
from lambda_fn.monitoring.release_reference import REFERENCE_FILE, sha256_hex

RUN_REFERENCE = f"monitoring/{REFERENCE_FILE}"  # servingkit.train.RUN_REFERENCE_DIR / REFERENCE_FILE
NO_REFERENCE = (
    "no monitoring reference: this release has no baseline, so the monitor cannot compute drift for it "
    f"(servingkit train writes {REFERENCE_FILE} into the model directory; or pass --reference-data FILE)"
)


class ReferenceError(ValueError):
    """A reference that cannot be found, read or computed; publish turns it into a PublishError."""


@dataclass(frozen=True)
class ReleaseReference:
    body: bytes
    origin: str  # where it came from, for the manifest and the user
    in_model: bool  # a file of the artifact itself (model/reference.json): not uploaded twice
    rows: int
    features: tuple[str, ...]

    @property
    def sha256(self) -> str:
        return sha256_hex(self.body)

    def entry(self, uri: str) -> dict[str, Any]:
        """The release manifest's `reference` object."""
        return {
            "uri": uri,
            "sha256": self.sha256,
            "rows": self.rows,
            "features": list(self.features),
            "origin": self.origin,
        }


def checked(body: bytes, origin: str, in_model: bool) -> ReleaseReference:
    """A stored reference, refused unless it parses and is in canonical form."""
    try:
        ref = Reference.from_json(body)
    except ReferenceFormatError as exc:
        raise ReferenceError(f"the reference from {origin} cannot be read: {exc}") from None
    if ref.to_json() != body:
        raise ReferenceError(f"the reference from {origin} is not in canonical form; write it with Reference.to_json()")
    return ReleaseReference(body, origin, in_model, ref.rows, tuple(f.name for f in ref.features))


def read_frame(path: Path) -> Any:
    """A DataFrame from CSV, Parquet or JSON lines (by the file's suffix)."""
    import pandas as pd

    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    readers = {
        ".csv": pd.read_csv,
        ".csv.gz": pd.read_csv,
        ".parquet": pd.read_parquet,
        ".jsonl": lambda p: pd.read_json(p, lines=True),
        ".ndjson": lambda p: pd.read_json(p, lines=True),
        ".json": lambda p: pd.read_json(p, lines=True),
        ".jsonl.gz": lambda p: pd.read_json(p, lines=True),
    }
    reader = readers.get(suffix)
    if reader is None:
        raise ReferenceError(f"--reference-data {path}: give a .csv, .parquet or .jsonl file")
    try:
        return reader(path)
    except (OSError, ValueError) as exc:
        raise ReferenceError(f"--reference-data {path}: {exc}") from None


def from_data(
    path: Path, local: Path, sha256: str, columns: list[str] | None, *, name: str, cache: Path, allow_env_mismatch: bool
) -> ReleaseReference:
    """The reference of a data file and the model's predictions on it (the model loaded as the function does)."""
    from lambda_fn.config import settings_from
    from lambda_fn.model_store import load_model

    frame = read_frame(path)
    if columns:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ReferenceError(f"--reference-data {path} lacks the signature's columns {missing}")
        frame = frame[columns]
    if len(frame) == 0:
        raise ReferenceError(f"--reference-data {path} holds no rows")
    env = {
        "MODEL_URI": str(local.resolve()),
        "MODEL_SHA256": sha256,
        "MODEL_CACHE_DIR": str(cache),
        "MODEL_ALLOW_ENV_MISMATCH": str(allow_env_mismatch).lower(),
    }
    try:
        predictions = load_model(settings_from(env)).predict(frame)
        body = Reference.build(frame, predictions, meta={"name": name}).to_json()
    except (ValueError, TypeError, ReferenceFormatError) as exc:
        raise ReferenceError(f"cannot compute the reference from {path}: {exc}") from None
    return checked(body, f"--reference-data {path.name}", False)


def from_run(run_id: str, tracking_uri: str | None, dest: Path) -> ReleaseReference | None:
    """The reference `servingkit train` logged to the run, or None when the run has none."""
    import mlflow.artifacts

    try:
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=f"runs:/{run_id}/{RUN_REFERENCE}", dst_path=str(dest), tracking_uri=tracking_uri
        )
    except Exception:  # noqa: BLE001 - MLflow raises its own types when the artifact is absent
        return None
    return checked(Path(path).read_bytes(), f"MLflow run {run_id} ({RUN_REFERENCE})", False)


def find(
    local: Path,
    *,
    run_id: str | None,
    from_registry: bool,
    tracking_uri: str | None,
    workdir: Path,
    data: Path | None,
    data_args: dict[str, Any],
) -> ReleaseReference | None:
    """The release's reference, in the module's order; None when there is none."""
    if data is not None:
        return from_data(data, local, cache=workdir / "reference-model", **data_args)
    own = local / REFERENCE_FILE
    if local.is_dir() and own.is_file():
        return checked(own.read_bytes(), f"the model directory ({REFERENCE_FILE})", True)
    if from_registry and run_id:
        return from_run(run_id, tracking_uri, workdir / "run-reference")
    return None
