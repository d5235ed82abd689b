"""One step's ask as the coordinator tracks it, and how its outcome is stored.

A step is asked with ``ask_async`` (no thread waits); a lost node, an
unknown name or a full mailbox make it ask again after a backoff, on
another holder where there is one, until its ``retries`` or its
``timeout`` run out. An answer (value or the actor's error) settles it.
"""

from __future__ import annotations

import traceback as _traceback
from dataclasses import dataclass, field
from typing import Any

from taskmesh.actors.future import Reply
from taskmesh.errors import ActorNotFound, AskTimeout, MailboxFull, PeerUnreachable, RemoteError

from .admission import Grant
from .canvas import Step
from .progress import StepResult

__all__ = ["RETRYABLE", "StepAttempt", "backoff", "error_record", "timed_out"]

RETRYABLE = (ActorNotFound, PeerUnreachable, MailboxFull)
"""Errors after which the step is asked again: nothing ran, or its node is gone."""

_RETRY_FIRST = 0.05
_RETRY_MAX = 1.0


def backoff(failures: int) -> float:
    """Seconds to wait before the next try, after ``failures`` failed ones."""
    return min(_RETRY_FIRST * 2.0 ** (failures - 1), _RETRY_MAX)


@dataclass(eq=False)
class StepAttempt:
    """A step being asked: its message and key, its deadline (monotonic),
    the current try's number, node and reply, the nodes found lost, and its
    leave from a limit."""

    message: Any
    key: str
    deadline: float
    attempt: int = 0
    failures: int = 0
    node: str | None = None
    reply: Reply | None = None
    lost: set[str] = field(default_factory=set)
    grant: Grant | None = None
    """Its leave from its capability's limit, held until it is settled."""
    admitting: bool = False
    """Waiting for that leave."""


def timed_out(step: Step) -> StepResult:
    error = AskTimeout(f"step {step.target!r} got no answer within {step.timeout:g} s")
    return StepResult(False, error=error_record(error))


def error_record(error: BaseException) -> dict[str, Any]:
    """An error as a workflow stores it: the remote type name for a
    `RemoteError`, else the local type's, with its traceback either way (a
    step on the coordinator's own node fails with the actor's exception)."""
    if isinstance(error, RemoteError):
        return {"type": error.type_name, "message": error.message, "traceback": error.traceback}
    text = "".join(_traceback.format_exception(error)) if error.__traceback__ else ""
    return {"type": type(error).__name__, "message": str(error), "traceback": text[-16384:]}
