"""What the transport needs from tracing (made by :mod:`taskmesh.tracing`).

With no hooks (tracing off) the transport runs exactly its untraced code:
the plain :class:`~taskmesh.transport.sender.Sender`, and envelopes with
trace context delivered without it. With hooks
(:class:`~taskmesh.transport.transport.TraceHooks`), sends go through the
hooks' sender (a span per send, trace context in the envelope) and each
traced payload is wrapped on arrival (:class:`Arrivals`), on the I/O
thread, to be handled inside its span where the actor runs.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["Arrivals"]


class Arrivals(Protocol):
    def received(self, payload: Any, headers: dict[str, str], sender: str, ask: bool) -> Any:
        """Wrap a payload that came with trace ``headers`` from the node at
        ``sender`` (I/O thread: keep it cheap, parse nothing here)."""
        ...
