"""The one exception of the batch jobs (PT `utilities/batch/exceptions.py`): engines, readers and writers raise it."""

from __future__ import annotations


class BatchJobError(RuntimeError):
    """The job cannot go on (bad configuration, broken model, unreadable input); the message says why."""
