"""The one bounded wait for work running beside a batch (the shadow, capture): never past the batch's deadline.

The caller started the work on a worker thread and fixed its deadline then (`time.monotonic()` + its bound);
`bounded_result` waits for the rest of it only, so the time the batch spent since does not extend the bound.
What a timeout means (and what it reports) stays the caller's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future


def bounded_result[T](future: Future[T], deadline: float, clock: Callable[[], float] = time.monotonic) -> T:
    """`future.result()`, waiting at most until `deadline` (on `clock`'s scale, time.monotonic by default).

    Raises TimeoutError when it is not done by then (the work goes on) and re-raises what the work raised."""
    return future.result(timeout=max(0.0, deadline - clock()))
