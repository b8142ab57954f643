"""CPU inside scikit-learn's `Pipeline.predict`, for `servingkit bench api`: put this directory first on a server's
PYTHONPATH and set SERVINGKIT_PREDICT_PROBE to a directory.

Both servers serve the same pipeline, so a server's CPU per request less its CPU in `predict` is what the server
itself spends (HTTP, parsing, validation, encoding). Each process keeps its running totals (calls, thread CPU
seconds) in a 16-byte file named by its pid, memory-mapped and updated after every call: read between rounds,
not during one. Without the variable nothing is imported or changed.
"""

from __future__ import annotations

import os

_DIR = os.environ.get("SERVINGKIT_PREDICT_PROBE")


def _install(directory: str) -> None:
    import mmap
    import struct
    import threading
    import time
    from pathlib import Path

    import sklearn.pipeline

    path = Path(directory) / str(os.getpid())
    path.write_bytes(bytes(16))
    with path.open("r+b") as f:
        totals = mmap.mmap(f.fileno(), 16)
    original = sklearn.pipeline.Pipeline.predict
    calls, seconds = [0], [0.0]
    lock = threading.Lock()  # MLflow's server predicts on several threads at once

    def predict(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        started = time.thread_time()
        try:
            return original(self, *args, **kwargs)
        finally:
            spent = time.thread_time() - started
            with lock:
                calls[0] += 1
                seconds[0] += spent
                struct.pack_into("<qd", totals, 0, calls[0], seconds[0])

    sklearn.pipeline.Pipeline.predict = predict  # type: ignore[method-assign]


if _DIR:
    _install(_DIR)
