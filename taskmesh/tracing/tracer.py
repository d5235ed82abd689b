"""The tracing of one node or client (see :mod:`taskmesh.tracing`).

:class:`Tracing` is what the layers get when tracing is on: the transport's
:class:`~taskmesh.transport.traced.TraceHooks`, the refs'
:class:`~taskmesh.addressing.RetryTracer`, and the node's ``deliver``. It
holds its own tracer from the given provider: nothing global is set, so two
nodes in one process may trace to different places.

The trace context travels as W3C ``traceparent``/``tracestate`` headers,
written and read by OpenTelemetry's own W3C propagator (not the process's
global one: the wire format is taskmesh's, whatever else the process uses).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import taskmesh
from taskmesh.actors.traced import Traced
from taskmesh.addressing import RetryHook
from taskmesh.tracing.process import ProcessScope
from taskmesh.tracing.sender import TracedSender
from taskmesh.tracing.spans import (
    CAPABILITIES,
    DESTINATION,
    MESSAGE,
    MESSAGING_SYSTEM,
    NODE,
    OPERATION_NAME,
    OPERATION_TYPE,
    SYSTEM,
    Current,
    peer_attributes,
)
from taskmesh.transport.envelope import encode_envelope, encode_traced_envelope

if TYPE_CHECKING:
    from taskmesh.actors.cell import Cell
    from taskmesh.actors.system import ActorSystem
    from taskmesh.transport.flow import Deliver
    from taskmesh.transport.iothread import IOThread
    from taskmesh.transport.outbox import Outbox
    from taskmesh.transport.sender import Sender

__all__ = ["Tracing"]

_W3C: Final = TraceContextTextMapPropagator()
_get_current_span = trace.get_current_span


class Tracing:
    """Spans and trace context for one node or client (thread-safe).

    ``provider`` is an OpenTelemetry ``TracerProvider``; ``node`` names the
    node (or client) in every span; ``owned`` says :meth:`close` shuts the
    provider down (it was made for this node), else only flushes it.
    """

    def __init__(self, provider: Any, *, node: str, owned: bool) -> None:
        self.provider = provider
        self.node = node
        self.tracer: Tracer = provider.get_tracer("taskmesh", taskmesh.__version__)
        self._owned = owned
        self._closed = False
        self._peers: dict[str, dict[str, Any]] = {}  # transport address -> attributes

    def close(self) -> None:
        """Export what is left (caller's thread, as the node stops; idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._owned:
            self.provider.shutdown()
        else:
            self.provider.force_flush()

    # --- sending (the caller's thread) ----------------------------------------

    def sender(self, outbox: Outbox, io: IOThread, *, max_message_size: int, hold: float) -> Sender:
        """The transport's sender: a span per tell and ask (TraceHooks)."""
        return TracedSender(outbox, io, max_message_size=max_message_size, hold=hold, tracing=self)

    def start_send(self, operation: str, target: str, address: str) -> Span | None:
        """Start the span of one ``tell`` or ``ask`` to ``target`` at the
        peer ``address``; None for a runtime actor's message outside any
        trace (those start none: see the package doc)."""
        if target[:1] == "_" and not _get_current_span().get_span_context().is_valid:
            return None
        peer = self._peers.get(address)
        if peer is None:
            peer = self._peers[address] = peer_attributes(address, "server")
        attributes = {
            MESSAGING_SYSTEM: SYSTEM,
            OPERATION_TYPE: "send",
            OPERATION_NAME: operation,
            DESTINATION: target,
            NODE: self.node,
            **peer,
        }
        return self.tracer.start_span(
            f"{operation} {target}", kind=SpanKind.PRODUCER, attributes=attributes
        )

    def encode(
        self,
        kind: int,
        target: str | None,
        correlation_id: int,
        deadline_ms: int | None,
        payload: Any,
        max_size: int,
        idempotency_key: str | None = None,
    ) -> bytes:
        """``encode_envelope`` with the current trace context, if any."""
        headers: dict[str, str] = {}
        _W3C.inject(headers)
        if not headers:
            return encode_envelope(
                kind, target, correlation_id, deadline_ms, payload, max_size, idempotency_key
            )
        return encode_traced_envelope(
            kind, target, correlation_id, deadline_ms, payload, max_size, idempotency_key, headers
        )

    @contextmanager
    def retrying(self, what: str, retries: int) -> Iterator[RetryHook]:
        """The span around every attempt of an ask with retries; yields the
        hook the retry loop calls before each retry (caller's thread)."""
        span = self.tracer.start_span(
            f"ask {what} with retries",
            attributes={NODE: self.node, "taskmesh.ask.retries": retries},
        )

        def on_retry(n: int, error: Exception, node: str | None) -> None:
            attributes: dict[str, Any] = {
                "taskmesh.ask.retry": n,
                "error.type": type(error).__qualname__,
                "exception.message": str(error),
            }
            if node is not None:
                attributes["taskmesh.ask.node"] = node
            span.add_event("retry", attributes)
            span.set_attribute("taskmesh.ask.retried", n)

        with Current(span):
            yield on_retry

    # --- receiving --------------------------------------------------------------

    def received(self, payload: Any, headers: dict[str, str], sender: str, ask: bool) -> Traced:
        """Wrap a payload that came with trace context (I/O thread, TraceHooks):
        the headers are only kept here, read where the actor runs."""
        return Traced(payload, ProcessScope(self, headers, sender, ask))

    def deliverer(self, system: ActorSystem) -> Deliver:
        """The node's ``deliver`` with tracing on: traced messages go to
        :meth:`ActorSystem.deliver_traced`, the rest as usual (I/O thread)."""
        deliver = system.deliver
        deliver_traced = system.deliver_traced

        def traced_deliver(
            target: str, message: Any, reply: Any, deadline: float | None, key: str | None = None
        ) -> bool | None:
            if type(message) is Traced:
                return deliver_traced(target, message, reply, deadline, key)
            return deliver(target, message, reply, deadline, key)

        return traced_deliver

    def start_process(self, cell: Cell, headers: dict[str, str], sender: str, ask: bool) -> Span:
        """Start the span of one message handled by ``cell``, child of the
        context it came with (the thread or task that runs the actor)."""
        attributes = {
            MESSAGING_SYSTEM: SYSTEM,
            OPERATION_TYPE: "process",
            OPERATION_NAME: "process",
            DESTINATION: cell.name,
            NODE: self.node,
            CAPABILITIES: list(cell.spec.actor.capabilities),
            MESSAGE: "ask" if ask else "tell",
            **(peer_attributes(sender, "network.peer") if sender else {}),
        }
        return self.tracer.start_span(
            f"process {cell.name}",
            context=_W3C.extract(headers),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        )
