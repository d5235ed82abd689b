"""System messages between a supervisor and its children.

They travel on a cell's system lane, ahead of user messages: a supervisor
sends :class:`Directive` to a child; a child sends :class:`Failed` to its
supervisor when it fails or exits and waits for the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from taskmesh.actors.future import Reply

if TYPE_CHECKING:
    from taskmesh.actors.cell import Cell

__all__ = ["Action", "Directive", "Failed"]


class Action(Enum):
    """What a supervisor tells a suspended (or healthy) child to do."""

    RESUME = "resume"
    RESTART = "restart"  # stop the instance, then start a fresh one after `delay`
    STOP_INSTANCE = "stop_instance"  # first half of a restart, for group strategies
    START_INSTANCE = "start_instance"  # second half
    STOP = "stop"  # for good


@dataclass(slots=True)
class Directive:
    """A system message from a supervisor to a child cell."""

    action: Action
    reason: BaseException | None = None
    delay: float = 0.0
    ack: Reply | None = None
    terminated_reason: str = "stopped"


@dataclass(slots=True)
class Failed:
    """A system message from a child cell to its supervisor: the child
    failed (``error`` set) or exited normally (``error`` is None) while at
    ``generation``, and now waits for a directive."""

    child: Cell
    error: BaseException | None
    generation: int
