"""What can go wrong loading a model, and the one file name every MLflow model directory has.

Below `model_store` and `model_env`, which both raise these (so neither needs the other to name them).
"""

from __future__ import annotations

MLMODEL = "MLmodel"


class ModelStoreError(RuntimeError):
    """Base of every model store failure; the message says what to fix."""


class ModelNotFoundError(ModelStoreError):
    pass


class ChecksumMismatchError(ModelStoreError):
    pass


class ModelLoadError(ModelStoreError):
    pass


class UnsafeArtifactError(ModelLoadError):
    """The artifact names or holds something outside itself (a climbing path, a symlink): never loaded."""
