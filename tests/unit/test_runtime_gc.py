"""The container's heap is frozen once, before the first model load (`lambda_fn.runtime.get_model`): the cyclic GC
then stops rescanning the SDK's models and the settings' schemas while the loaders import scikit-learn. Later
garbage is still collected, and `runtime.reset()` (a new container, in tests and the local runtime) unfreezes."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from lambda_fn import runtime
from lambda_fn.model_store import artifact_sha256
from tests.helpers import save_joblib


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_the_first_load_freezes_once_later_garbage_is_collected_and_reset_unfreezes(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model = save_joblib(tmp_path / "model.joblib")
    clean_env.setenv("MODEL_URI", str(model))
    clean_env.setenv("MODEL_SHA256", artifact_sha256(model))
    clean_env.setenv("MODEL_CACHE_DIR", str(tmp_path / "cache"))
    gc.unfreeze()
    before_load = Cycle()
    loaded = runtime.get_model()
    frozen = gc.get_freeze_count()
    assert frozen > 0, "the first load freezes what is alive"
    # `<=`: a frozen object freed by reference counting meanwhile lowers the count; a second freeze would raise it.
    assert runtime.get_model() is loaded and gc.get_freeze_count() <= frozen, "a cached model freezes nothing more"

    Cycle()  # unreachable cyclic garbage made after the freeze is still found by the collector
    assert gc.collect() >= 1

    del before_load  # garbage among the frozen objects waits for reset, as it would for the container's end
    runtime.reset()
    assert gc.get_freeze_count() == 0
    assert gc.collect() >= 1
