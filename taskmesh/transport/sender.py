"""The sending half of a transport: tell and ask, in the caller's thread.

Envelopes are encoded here, in the sending thread, so a value msgpack
cannot encode or an oversized message fails at the caller, and the I/O
thread only joins encoded envelopes into frames. A sync ask goes further
and sends itself (:func:`~taskmesh.transport.lead.lead`).
"""

from __future__ import annotations

from _thread import get_ident
from typing import Any

from taskmesh.actors.future import Reply
from taskmesh.errors import ActorError, AskTimeout, PeerUnreachable
from taskmesh.transport.envelope import ASK, TELL, encode_envelope
from taskmesh.transport.iothread import IOThread
from taskmesh.transport.lead import lead
from taskmesh.transport.link import DOWN, Link
from taskmesh.transport.outbox import Outbox

__all__ = ["Sender"]

_INF = float("inf")


class Sender:
    """Tells and asks over links; thread-safe, every method runs in the
    caller's thread. ``hold`` is how long a sync asker may keep a link's
    socket waiting for its answer (other threads' messages to that peer
    wait meanwhile); a slower answer is read by the I/O thread."""

    __slots__ = ("_io", "_max", "_outbox", "hold")

    def __init__(self, outbox: Outbox, io: IOThread, *, max_message_size: int, hold: float):
        self._outbox = outbox
        self._io = io
        self._max = max_message_size
        self.hold = hold

    def tell(self, link: Link, target: str, message: Any) -> None:
        """Queue a tell; a message that cannot be queued is a dead letter."""
        outbox = self._outbox
        data = encode_envelope(TELL, target, 0, None, message, self._max)
        if link.state == DOWN or outbox.stopping:
            outbox.dead_letter(f"{link.address}/{target}", message, "peer_unreachable", link.reason)
        elif not outbox.enqueue(link, data):
            reason = "peer_unreachable" if link.state == DOWN else "queue_full"
            outbox.dead_letter(f"{link.address}/{target}", message, reason, link.reason)

    def ask(
        self, link: Link, target: str, message: Any, timeout: float | None, key: str | None
    ) -> Reply:
        """Queue an ask and return its future (pipelining: many can be in
        flight). Raises PeerUnreachable when the link is down or its queue
        stays full."""
        return self._ask(link, target, message, timeout, key, True)[1]

    def _ask(
        self,
        link: Link,
        target: str,
        message: Any,
        timeout: float | None,
        key: str | None,
        wake: bool,
    ) -> tuple[int, Reply]:
        outbox = self._outbox
        cid = outbox.next_cid()
        if timeout is None:
            data = encode_envelope(ASK, target, cid, None, message, self._max, key)
            deadline = _INF
        else:
            ms = int(timeout * 1000)
            data = encode_envelope(ASK, target, cid, ms, message, self._max, key)
            deadline = outbox.clock() + timeout
        if link.state == DOWN or outbox.stopping:
            raise outbox.unreachable(link)
        reply = Reply()
        outbox.pending[cid] = (reply, link, deadline)
        if not outbox.enqueue(link, data, wake=wake):
            outbox.pending.pop(cid, None)
            if link.state == DOWN:
                raise outbox.unreachable(link)
            raise PeerUnreachable(f"queue to {link.address} is full ({outbox.max_queue} messages)")
        return cid, reply

    def begin_ask(
        self, link: Link, target: str, message: Any, timeout: float | None, key: str | None
    ) -> Reply:
        """Start an ask the caller will wait for at once: send it in this
        thread and read the answer here when it comes within ``hold``. The
        returned future is then answered already; otherwise the I/O thread
        answers it (and expires it at its deadline)."""
        return self._begin(link, target, message, timeout, key)[1]

    def _begin(
        self, link: Link, target: str, message: Any, timeout: float | None, key: str | None
    ) -> tuple[int, Reply]:
        outbox = self._outbox
        if get_ident() == outbox.io_thread:
            raise ActorError(
                "cannot ask synchronously on the transport's I/O thread: an inline "
                "actor must not block; use tell or ask_async"
            )
        cid, reply = self._ask(link, target, message, timeout, key, False)
        io = self._io
        hold = self.hold if timeout is None else min(self.hold, timeout)
        if not lead(outbox, io.inbound, link, cid, hold, io.prefix, io.batch_bytes):
            outbox.schedule(link)
        return cid, reply

    def ask_sync(
        self, link: Link, target: str, message: Any, timeout: float | None, key: str | None
    ) -> Any:
        """Ask and wait for the answer (see :meth:`begin_ask`)."""
        cid, reply = self._begin(link, target, message, timeout, key)
        try:
            return reply.get(timeout)
        except AskTimeout:
            self._outbox.pending.pop(cid, None)
            raise
