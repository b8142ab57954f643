"""The release's smoke example: the model's input example and the predictions the published model makes on it.

Publish records both in `release.json` (`"smoke": {"inputs", "predictions", "tolerance"}`); the pre-traffic
hook (`lambda_fn.release_checks`) sends the inputs to the new function version and compares what it serves.
The model is loaded here as the function loads it (`lambda_fn.model_store.load_model`, pinned by the digest
just computed), and the rows go through the same JSON round trip and `score_batch` call as the hook's smoke
test, so a healthy deployment reproduces the recorded predictions exactly (the tolerance covers another CPU).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lambda_fn.release_checks import ABS_TOL, REL_TOL

MAX_ROWS = 20  # the smoke test's payload stays small: it is an invocation before every traffic shift


class SmokeError(ValueError):
    """The published model cannot score its own input example: it would fail the pre-traffic hook."""


def smoke_example(local: Path, sha256: str, *, cache: Path, allow_env_mismatch: bool) -> dict[str, Any] | None:
    """`{"inputs", "predictions", "tolerance"}` for an MLflow directory with an input example, else None."""
    from lambda_fn.config import settings_from
    from lambda_fn.model_artifact import Artifact
    from lambda_fn.model_store import MLMODEL, load_model
    from lambda_fn.model_store import input_example as read_example
    from lambda_fn.scoring import score_batch

    if not (local.is_dir() and (local / MLMODEL).is_file()):
        return None
    import yaml

    mlmodel = yaml.safe_load((local / MLMODEL).read_text()) or {}
    frame = read_example(Artifact.verify(local), mlmodel if isinstance(mlmodel, dict) else {})
    if frame is None or len(frame) == 0:
        return None
    rows = json.loads(frame.head(MAX_ROWS).to_json(orient="records", date_format="iso"))
    env = {
        "MODEL_URI": str(local.resolve()),
        "MODEL_SHA256": sha256,
        "MODEL_CACHE_DIR": str(cache),
        "MODEL_ALLOW_ENV_MISMATCH": str(allow_env_mismatch).lower(),
    }
    model = load_model(settings_from(env))
    result = score_batch(rows, model, finite=True)
    if result.errors:
        first = min(result.errors)
        raise SmokeError(
            f"the model cannot score row {first} of its own input example ({result.errors[first].reason}: "
            f"{result.errors[first].detail}); it would fail the pre-traffic hook"
        )
    predictions = json.loads(json.dumps(result.predictions))  # what the function's JSON answer will hold
    return {"inputs": rows, "predictions": predictions, "tolerance": {"rel": REL_TOL, "abs": ABS_TOL}}
