"""The receiving half: an actor handles a traced message inside its span.

The pattern of OpenTelemetry's messaging instrumentations (pika, celery):
extract the context the message came with, start a CONSUMER span as its
child, make it current around the handler, end it after. Here the handler
is the actor's ``receive``, on whichever thread runs the actor; the
context is read there, not on the I/O thread that decoded the message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from taskmesh.tracing.spans import Current

if TYPE_CHECKING:
    from taskmesh.actors.cell import Cell
    from taskmesh.tracing.tracer import Tracing

__all__ = ["ProcessScope"]


class ProcessScope:
    """The trace scope of one message (a :class:`~taskmesh.actors.traced.TraceScope`)."""

    __slots__ = ("_ask", "_headers", "_sender", "_tracing")

    def __init__(self, tracing: Tracing, headers: dict[str, str], sender: str, ask: bool) -> None:
        self._tracing = tracing
        self._headers = headers
        self._sender = sender
        self._ask = ask

    def run(self, cell: Cell, receive: Callable[[Any], Any], message: Any) -> Any:
        """``receive(message)`` inside a ``process`` span (the actor's thread)."""
        span = self._tracing.start_process(cell, self._headers, self._sender, self._ask)
        with Current(span):
            return receive(message)

    async def run_async(
        self, cell: Cell, receive: Callable[[Any], Awaitable[Any]], message: Any
    ) -> Any:
        """``await receive(message)`` inside a ``process`` span (the event loop)."""
        span = self._tracing.start_process(cell, self._headers, self._sender, self._ask)
        with Current(span):
            return await receive(message)
