"""The sending half of a transport: tell and ask, in the caller's thread.

Envelopes are encoded here, in the sending thread, so a value msgpack
cannot encode or an oversized message fails at the caller, and the I/O
thread only joins encoded envelopes into frames. A sync ask goes further
and sends itself (:func:`~taskmesh.transport.lead.lead`).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from _thread import get_ident
from typing import Any

from taskmesh.actors.future import Reply, no_waiting_on
from taskmesh.errors import ActorError, AskTimeout, MailboxFull, PeerUnreachable
from taskmesh.transport.envelope import ASK, TELL, encode_envelope
from taskmesh.transport.flow import flow_key
from taskmesh.transport.iothread import IOThread
from taskmesh.transport.lead import lead
from taskmesh.transport.link import DOWN, Link
from taskmesh.transport.outbox import Outbox

__all__ = ["Sender"]

_INF = float("inf")
_CREDIT_HOLD = 0.002  # s a tell out of credit may hold the link's socket, waiting for it


class Sender:
    """Tells and asks over links; thread-safe, every method runs in the
    caller's thread. ``hold`` is how long a sync asker may keep a link's
    socket waiting for its answer (other threads' messages to that peer
    wait meanwhile); a slower answer is read by the I/O thread."""

    __slots__ = ("_io", "_max", "_outbox", "encode", "hold")

    def __init__(self, outbox: Outbox, io: IOThread, *, max_message_size: int, hold: float):
        self._outbox = outbox
        self._io = io
        self._max = max_message_size
        self.hold = hold
        self.encode = encode_envelope
        """How tells and asks are encoded: a traced sender adds trace context."""

    def tell(self, link: Link, target: str, message: Any, block: bool = True) -> None:
        """Queue a tell; a message that cannot be queued is a dead letter.

        With flow control on (``link.window``), a tell beyond the credit the
        peer granted for ``target`` waits for more, within the send timeout;
        then it is a ``mailbox_full`` dead letter and :class:`MailboxFull`
        is raised. ``block=False``, or a thread that must never wait (the
        I/O thread, an event loop), makes it a dead letter at once instead.
        """
        outbox = self._outbox
        data = self.encode(TELL, target, 0, None, message, self._max)
        if link.state == DOWN or outbox.stopping:
            outbox.dead_letter(f"{link.address}/{target}", message, "peer_unreachable", link.reason)
            return
        if link.window:
            key = target if target[0] != "~" else flow_key(target)
            tickets = link.tickets.get(key)
            if tickets is None:
                tickets = link.tickets.setdefault(key, itertools.count())
            ticket = next(tickets)
            if ticket >= link.granted.get(key, link.window) and not self._wait_credit(
                link, target, key, message, ticket, block
            ):
                return
        if not outbox.enqueue(link, data):
            reason = "peer_unreachable" if link.state == DOWN else "queue_full"
            outbox.dead_letter(f"{link.address}/{target}", message, reason, link.reason)

    async def tell_async(self, link: Link, target: str, message: Any) -> None:
        """:meth:`tell` from a coroutine: a wait for credit runs on a worker
        thread, so the event loop goes on meanwhile (the common case, credit
        at hand, costs nothing more than a tell)."""
        outbox = self._outbox
        data = self.encode(TELL, target, 0, None, message, self._max)
        if link.state == DOWN or outbox.stopping:
            outbox.dead_letter(f"{link.address}/{target}", message, "peer_unreachable", link.reason)
            return
        if link.window:
            key = flow_key(target)
            ticket = next(link.tickets.setdefault(key, itertools.count()))
            if ticket >= link.granted.get(key, link.window):
                loop = asyncio.get_running_loop()
                wait = functools.partial(
                    self._wait_credit, link, target, key, message, ticket, True
                )
                if not await loop.run_in_executor(None, wait):
                    return
        if not outbox.enqueue(link, data):
            reason = "peer_unreachable" if link.state == DOWN else "queue_full"
            outbox.dead_letter(f"{link.address}/{target}", message, reason, link.reason)

    def _wait_credit(
        self, link: Link, target: str, key: str, message: Any, ticket: int, block: bool
    ) -> bool:
        """Wait until the peer's credit for ``key`` (``flow_key(target)``)
        covers ``ticket``; False once the message was refused (dead letter;
        raises MailboxFull when the caller blocked in vain)."""
        outbox = self._outbox
        where = f"{link.address}/{target}"
        never = no_waiting_on(get_ident())
        epoch = link.epoch
        if block and never is None:
            deadline = outbox.clock() + outbox.send_timeout
            credit = link.credit
            io = self._io
            window = link.window

            def covered() -> bool:
                return ticket < link.granted.get(key, window) or link.epoch != epoch

            while True:
                if link.epoch != epoch:  # the counts started afresh: a new ticket
                    epoch = link.epoch
                    ticket = next(link.tickets.setdefault(key, itertools.count()))
                if ticket < link.granted.get(key, window):
                    return True
                if link.state == DOWN or outbox.stopping:
                    outbox.dead_letter(where, message, "peer_unreachable", link.reason)
                    return False
                left = deadline - outbox.clock()
                if left <= 0:
                    break
                # Send what waits and read the credit ourselves if the socket
                # is free (see lead); else wait for the I/O thread to read it.
                if lead(outbox, io.inbound, link, 0, min(left, _CREDIT_HOLD), io.prefix,
                        io.batch_bytes, covered):  # fmt: skip
                    continue
                credit.clear()
                if not covered():
                    credit.wait(min(left, _CREDIT_HOLD))
            error = f"no room in the mailbox of {where} within {outbox.send_timeout:g} s"
        else:
            error = f"the mailbox of {where} is full" + (f" ({never} never waits)" if never else "")
        link.lock.acquire()  # give the ticket back: this tell never goes out
        try:
            if link.epoch == epoch:
                link.granted[key] = link.granted.get(key, link.window) + 1
        finally:
            outbox.let_go(link)
        outbox.dead_letter(where, message, "mailbox_full", error)
        if block:
            raise MailboxFull(error)
        return False

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
            data = self.encode(ASK, target, cid, None, message, self._max, key)
            deadline = _INF
        else:
            ms = int(timeout * 1000)
            data = self.encode(ASK, target, cid, ms, message, self._max, key)
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
        never = no_waiting_on(get_ident())
        if never is not None:  # checked before anything is sent
            raise ActorError(
                f"cannot ask synchronously on {never}: it must never block; "
                "use tell, or await ask_async"
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
