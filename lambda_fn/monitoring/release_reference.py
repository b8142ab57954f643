"""The release's training reference, pinned by its sha256 like the model, and verified before it is used.

`servingkit train` writes `reference.json` into the exported model directory (so the model's digest covers it
too); `servingkit publish` records it in the release manifest as `{"reference": {"uri": ..., "sha256": ...}}`.
The monitor function is given the same pair (MONITOR_REFERENCE_URI, MONITOR_REFERENCE_SHA256) and refuses a
reference whose bytes do not have the pinned digest: a reference anyone who can write the bucket could replace
would let them hide drift. The stored text is the reference's canonical JSON (`Reference.to_json`), so the
digest of the file equals `Reference.sha256`, the digest every profile records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from lambda_fn.monitoring.reference import Reference, ReferenceFormatError

REFERENCE_FILE = "reference.json"


class ReferencePinError(ReferenceFormatError):
    """The reference's bytes are not the pinned ones (tampered, replaced or mis-pinned), or cannot be read."""


def sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def verify_reference(body: bytes, expected_sha256: str, where: str = "reference") -> Reference:
    """The reference in `body`, refused unless its bytes have the pinned sha256 (and are its canonical form)."""
    expected = expected_sha256.strip().lower()
    actual = sha256_hex(body)
    if actual != expected:
        raise ReferencePinError(
            f"{where}: sha256 {actual} is not the pinned {expected}; refusing a reference that is not the "
            "release's (re-publish the release, or pin the digest its manifest records)"
        )
    try:
        return Reference.from_json(body, expected_sha256=expected)
    except ReferenceFormatError as exc:
        raise ReferencePinError(f"{where}: {exc}") from exc


def read_local(uri: str) -> bytes:
    path = Path(urlparse(uri).path) if uri.startswith("file:") else Path(uri)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ReferencePinError(f"cannot read the reference {uri}: {exc}") from exc


def load_reference(uri: str, sha256: str, read_s3: Callable[[str], bytes] | None = None) -> Reference:
    """Read the reference at `uri` (s3://, file:// or a path) and verify it against `sha256`."""
    if uri.startswith("s3://"):
        if read_s3 is None:
            from lambda_fn.monitoring.s3_store import read_s3_uri

            read_s3 = read_s3_uri
        body = read_s3(uri)
    else:
        body = read_local(uri)
    return verify_reference(body, sha256, uri)
