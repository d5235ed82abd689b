"""The sending half: a span per tell and ask, its context in the envelope.

:class:`TracedSender` is the transport's :class:`~taskmesh.transport.sender.Sender`
with tracing on. It opens the send span, makes it current while the
plain sender encodes (its ``encode`` injects the current context), and
ends it: a tell's once it is queued, an ask's when its answer or error
arrives (on whichever thread hands it over).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from opentelemetry.context import attach, detach
from opentelemetry.trace import Span, set_span_in_context

from taskmesh.actors.future import Reply
from taskmesh.errors import AskTimeout
from taskmesh.tracing.spans import Current, failed
from taskmesh.transport.sender import Sender

if TYPE_CHECKING:
    from taskmesh.tracing.tracer import Tracing
    from taskmesh.transport.iothread import IOThread
    from taskmesh.transport.link import Link
    from taskmesh.transport.outbox import Outbox

__all__ = ["TracedSender"]


class TracedSender(Sender):
    """A :class:`Sender` that traces; every method runs in the caller's thread."""

    __slots__ = ("_tracing",)

    def __init__(
        self,
        outbox: Outbox,
        io: IOThread,
        *,
        max_message_size: int,
        hold: float,
        tracing: Tracing,
    ) -> None:
        super().__init__(outbox, io, max_message_size=max_message_size, hold=hold)
        self._tracing = tracing
        self.encode = tracing.encode

    def tell(self, link: Link, target: str, message: Any, block: bool = True) -> None:
        span = self._tracing.start_send("tell", target, link.address)
        if span is None:
            super().tell(link, target, message, block)
            return
        with Current(span):
            super().tell(link, target, message, block)

    async def tell_async(self, link: Link, target: str, message: Any) -> None:
        span = self._tracing.start_send("tell", target, link.address)
        if span is None:
            await super().tell_async(link, target, message)
            return
        with Current(span):
            await super().tell_async(link, target, message)

    def _ask(
        self,
        link: Link,
        target: str,
        message: Any,
        timeout: float | None,
        key: str | None,
        wake: bool,
    ) -> tuple[int, Reply]:
        span = self._tracing.start_send("ask", target, link.address)
        if span is None:
            return super()._ask(link, target, message, timeout, key, wake)
        token = attach(set_span_in_context(span))
        try:
            cid, reply = super()._ask(link, target, message, timeout, key, wake)
        except BaseException as error:
            failed(span, error)
            span.end()
            raise
        finally:
            detach(token)
        reply.add_done_callback(partial(_answered, span))
        return cid, reply

    def ask_sync(
        self, link: Link, target: str, message: Any, timeout: float | None, key: str | None
    ) -> Any:
        cid, reply = self._begin(link, target, message, timeout, key)
        try:
            return reply.get(timeout)
        except AskTimeout as error:
            self._outbox.pending.pop(cid, None)
            reply.fail(error)  # nobody else holds this reply: this ends its span
            raise


def _answered(span: Span, reply: Reply) -> None:
    """End an ask's span with its outcome (the thread that answers it)."""
    try:
        reply.get(0)
    except Exception as error:
        failed(span, error)
    span.end()
