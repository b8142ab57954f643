"""The container's garbage-collector policy: settled once, before the first model load; each load's model frozen
after it (`lambda_fn.runtime.get_model`).

Why before: what is alive when the first load starts (the SDK's service models, the settings' schemas,
Powertools) lives as long as the container, and the load then imports scikit-learn and scipy, a hundred thousand
objects and many collections that each rescanned all of it: about 0.5 s of a 2.8 s cold start
(`servingkit bench coldstart`, interleaved).

Why after: with CPython's defaults (a young collection every 2,000 net new container objects, 3.13) a 10,000-record
batch, whose ~28,000 objects all live until the batch ends, went through ~15 collections (~12 ms of CPU, median)
and, every ~7 batches, a full one that walks the model's and the libraries' ~190,000 objects (110-150 ms).
Those objects live as long as the container, so they are frozen (`gc.freeze`: left out of every collection);
and a young collection waits for `GEN0_THRESHOLD` net new objects, more than the largest batch Lambda sends
(10,000 records) keeps alive, so a batch's own objects, freed by reference counting when it ends, trigger none.

Memory stays bounded: the count that triggers a collection is of container objects still alive since the last
one, so cyclic garbage (and all it holds) is collected once ~`GEN0_THRESHOLD` such objects have piled up, as
before, only later (tests/unit/test_heap.py: a hook leaving a cycle per record that holds its features saws
between 0.6 and 11 MB over 90 batches of 1,000 records; with no collector, 28 MB after 60 and growing). The
garbage collector is never disabled.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 50_000  # CPython's default is 2,000; older generations keep their defaults

_settled = False


def settle() -> bool:
    """Freeze what is alive now and raise the young generation's threshold, once per process (before a load).

    Returns True when this call applied the policy, False when an earlier one had (a second model, a later batch).
    """
    global _settled
    if _settled:
        return False
    _settled = True
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, older, oldest)
    return True


def keep_loaded() -> None:
    """After a model load: the model's objects (and the libraries its load imported) leave every collection."""
    gc.freeze()


def release() -> None:
    """A new container in the same process (tests, the local runtime): what was frozen is collectable again."""
    gc.unfreeze()
