"""A message that carries its trace context to the actor that handles it.

With tracing on (:mod:`taskmesh.tracing`), a message that arrived from
another node with W3C trace context is queued as ``(TRACED, Traced, reply,
deadline)``: the context travels in the mailbox with the message, and the
cell runs ``receive`` inside the message's "process" span on whichever
thread runs the actor (its own thread, or the event loop). Untraced
messages keep kind ``USER``, so the cells' hot loops do not change for
them: a nonzero kind is dispatched apart already.

This module knows no OpenTelemetry: a :class:`TraceScope` made by
``taskmesh.tracing`` does the tracing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, final

if TYPE_CHECKING:
    from taskmesh.actors.cell import Cell

__all__ = ["TraceScope", "Traced", "untraced"]


class TraceScope(Protocol):
    """How one traced message is handled (the cell's consumer thread)."""

    def run(self, cell: Cell, receive: Callable[[Any], Any], message: Any) -> Any:
        """Call ``receive(message)`` inside the message's trace and return
        its result; an exception is recorded on the span and re-raised."""
        ...

    def run_async(
        self, cell: Cell, receive: Callable[[Any], Awaitable[Any]], message: Any
    ) -> Awaitable[Any]:
        """As :meth:`run`, for an async ``receive`` (the event loop)."""
        ...


@final
class Traced:
    """A user message and the trace scope it is handled in."""

    __slots__ = ("message", "scope")

    def __init__(self, message: Any, scope: TraceScope) -> None:
        self.message = message
        self.scope = scope

    def __repr__(self) -> str:
        return f"Traced({self.message!r})"


def untraced(message: Any) -> Any:
    """The user's message, whether or not it is wrapped in :class:`Traced`
    (for dead letters and errors: rare paths only)."""
    return message.message if type(message) is Traced else message
