"""When the emulator dies: one rule for telling it apart from other errors, and a real one to kill.

The local cloud talks to an emulator that can stop answering (stopped, killed, paused) or come back
empty (restarted: moto and LocalStack keep no state). `emulator_fault()` is the one place that reads an
exception as such a fault and words it in one line; the pipeline turns it into the reason in its
summary instead of a traceback. `MotoProcess` runs moto's server as a child process so tests and
`servingkit bench faults` can do all of that for real, with signals.
"""

from __future__ import annotations

from typing import Any

from servingkit.localcloud.aws_responses import error_code

DOWN_GRACE_S = 10.0  # an emulator silent this long is taken for dead (a shorter pause is ridden out)
# Codes of an emulator that answers but no longer has the stack's resources (it restarted, empty).
_STATE_LOST = frozenset(
    {
        "ResourceNotFoundException",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "NoSuchBucket",
    }
)


class EmulatorFaultError(RuntimeError):
    """The emulator stopped answering (`lost_state` False) or answers without the stack (True)."""

    def __init__(self, reason: str, *, lost_state: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.lost_state = lost_state


def client_config() -> Any:
    """botocore settings for the local cloud's own clients: a dead emulator is noticed in seconds, not minutes
    (the default read timeout is 60 s, per attempt); a pause shorter than the read timeout is ridden out."""
    from botocore.config import Config

    return Config(connect_timeout=2, read_timeout=20, retries={"mode": "standard", "max_attempts": 3})


def emulator_fault(exc: BaseException, endpoint: str | None) -> EmulatorFaultError | None:
    """`exc` as an emulator fault with its one-line reason, or None when it is any other error."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    where = endpoint or "the emulator"
    if isinstance(exc, EmulatorFaultError):
        return exc
    if isinstance(exc, (ConnectionError, HTTPClientError)):
        return EmulatorFaultError(f"the emulator at {where} stopped answering ({type(exc).__name__})", lost_state=False)
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in _STATE_LOST:
            return EmulatorFaultError(
                f"the emulator at {where} answers without the stack's resources ({code}): it was restarted and "
                "kept nothing",
                lost_state=True,
            )
    return None
