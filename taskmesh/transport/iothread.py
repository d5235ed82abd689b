"""The I/O thread: the thread that runs this node's ZeroMQ sockets.

It owns the bound ROUTER (inbound tells, asks and heartbeats from every
peer, answered on the same connection; see :mod:`~taskmesh.transport.router`),
one DEALER per peer (outbound messages, their answers, heartbeat answers;
see :mod:`~taskmesh.transport.link`) and each DEALER's monitor socket. Other
threads may use the ROUTER or a DEALER for a moment under its lock (an
actor sending its answer, a sync asker); so the I/O thread polls those
sockets' file descriptors, never the sockets, and uses a socket only under
its lock too.

One loop: open new links, send what the outbox's ready links hold (one
frame per batch), poll, read what is readable, send the answers queued on
the router, and every ``heartbeat_interval`` ping peers, mark the silent
ones suspect and fail asks past their deadline.

Polling a file descriptor instead of a socket has one rule: ZeroMQ signals
the fd only when a socket with nothing left to read gets input, and any use
of the socket (a send too) may consume that signal. So whoever used a
socket looks at ZMQ_EVENTS before letting go of it while the I/O thread
relies on the fd (``Router.has_input``, ``Inbound.service``); without that,
input waits unread until the next message on another connection.

How the sockets are made (and why links do not set IMMEDIATE): ``sockets``.
"""

from __future__ import annotations

import logging
import threading
from _thread import get_ident
from collections.abc import Callable
from typing import Final

import zmq

from taskmesh.actors.future import forbid_waiting
from taskmesh.errors import PeerUnreachable
from taskmesh.transport.counters import Counters, RateLimitedLog
from taskmesh.transport.envelope import frame_prefix
from taskmesh.transport.flow import Inflow
from taskmesh.transport.inbound import Answered, Inbound, hand_over
from taskmesh.transport.link import Link
from taskmesh.transport.links import Links
from taskmesh.transport.liveness import Liveness
from taskmesh.transport.outbound import BATCH_BYTES
from taskmesh.transport.outbox import Outbox, Waker
from taskmesh.transport.router import Router
from taskmesh.transport.security import Authenticator
from taskmesh.transport.sockets import SocketOptions, bind_router

__all__ = ["IOThread"]

_POLLIN: Final = int(zmq.POLLIN)

log = logging.getLogger("taskmesh.transport")


class IOThread:
    """Runs :meth:`run` in the transport's I/O thread; see the module doc."""

    def __init__(
        self,
        outbox: Outbox,
        inflow: Inflow,
        options: SocketOptions,
        *,
        listen: str | None,
        advertise: str | None,
        max_message_size: int,
        heartbeat_interval: float,
        suspect_after: float,
        stale_after: float,
        counters: Counters,
        clock: Callable[[], float],
    ) -> None:
        self.outbox = outbox
        self.options = options
        self.listen = listen
        self.advertise = advertise
        self.heartbeat_interval = heartbeat_interval
        self.counters = counters
        self.clock = clock
        self.ready = threading.Event()
        self.error: Exception | None = None
        self.bound = ""
        self.prefix = b""  # every frame's ``version, sender`` header, once bound
        self.batch_bytes = min(BATCH_BYTES, max_message_size)
        self.limited = RateLimitedLog(log, clock=clock)
        self.inflow = inflow
        self.inbound = Inbound(
            outbox, inflow, max_message_size=max_message_size, limited=self.limited
        )
        self.answered: Answered = []  # answers read, not yet handed over
        self.liveness = Liveness(
            outbox, self.inbound, counters, self.answered,
            suspect_after=suspect_after, stale_after=stale_after, limited=self.limited,
            clock=clock,
        )  # fmt: skip
        self.router: Router | None = None
        self.context: zmq.Context[zmq.Socket[bytes]] | None = None
        self.authenticator: Authenticator | None = None
        self.poller = zmq.Poller()
        self.links = Links(
            outbox, self.inbound, self.liveness, counters, self.answered, self.poller,
            options, self.batch_bytes,
        )  # fmt: skip
        self.waker = Waker()
        outbox.waker = self.waker

    # --- setup (the I/O thread) -------------------------------------------------

    def _bind(self) -> None:
        keys = self.options.keys
        assert self.context is not None
        if keys is not None:
            self.authenticator = Authenticator(self.context, keys)
        if self.listen is None:
            self.prefix = self.links.prefix = frame_prefix(self.advertise or "")
            return
        router, self.bound = bind_router(self.context, self.options, self.listen)
        self.prefix = self.links.prefix = frame_prefix(self.advertise or self.bound)
        self.router = Router(
            self.outbox, router, self.prefix,
            max_message_size=self.inbound.max_message_size,
            batch_bytes=self.batch_bytes, limited=self.limited,
        )  # fmt: skip
        self.poller.register(self.router.fd, _POLLIN)

    # --- the loop -----------------------------------------------------------------

    def run(self) -> None:
        """The I/O thread's body."""
        try:
            self.context = zmq.Context()
            self._bind()
        except Exception as exc:
            self.error = exc
            self._close(set())
            self.ready.set()
            return
        self.poller.register(self.waker.fd, _POLLIN)
        me = get_ident()
        self.outbox.io_thread = me
        forbid_waiting(me)
        self.ready.set()
        try:
            self._loop()
        except Exception:
            log.exception("transport I/O thread crashed")
        finally:
            forbid_waiting(me, False)
            self._shutdown()

    def _loop(self) -> None:
        outbox = self.outbox
        clock = self.clock
        poll = self.poller.poll
        router = self.router
        router_fd = router.fd if router is not None else -2
        waker = self.waker
        links = self.links
        by_fd = links.by_fd
        ready = outbox.ready
        answered = self.answered
        interval = self.heartbeat_interval
        next_tick = clock() + interval
        while True:
            # Clear the flag before looking at the queues: a sender that
            # appends after this point sees it clear and wakes us.
            outbox.wake_pending = False
            if outbox.stopping:
                return
            while outbox.new_links:
                assert self.context is not None
                links.open(outbox.new_links.popleft(), self.context)
            while outbox.forgotten:
                links.forget(outbox.forgotten.popleft())
            while outbox.attention:
                links.attend(outbox.attention.popleft())
            while ready:
                link = ready.popleft()
                link.scheduled = False
                links.send(link)
            if answered:
                hand_over(answered)
            if (
                ready
                or outbox.attention
                or outbox.new_links
                or outbox.forgotten
                or self.inflow.roomy
                or (router is not None and (router.queue or router.unread))
            ):
                timeout = 0
            elif links.blocked or (router is not None and router.backlog):
                timeout = 1
            else:
                timeout = max(0, int((next_tick - clock()) * 1000) + 1)
            events = poll(timeout)
            # Awake until the top of the loop looks at the queues again: what
            # is queued meanwhile (an answer an inline actor just gave, too)
            # needs no wake-up.
            outbox.wake_pending = True
            for polled, _ in events:
                if polled == router_fd:
                    assert router is not None
                    router.unread = True
                elif polled == waker.fd:
                    waker.drain()
                elif isinstance(polled, int):
                    readable = by_fd.get(polled)
                    if readable is not None:
                        links.attend(readable)
                else:
                    found = links.by_monitor.get(polled)
                    if found is not None:
                        self.liveness.read_monitor(found)
            if router is not None and (
                router.unread or router.queue or router.backlog or self.inflow.roomy
            ):
                self._serve_router(router)
            if answered:
                hand_over(answered)
            if links.blocked:
                links.retry()
            now = clock()
            if now >= next_tick:
                self.liveness.tick(links.links, now)
                links.unpark()
                if router is not None:
                    with router.lock:
                        self.inflow.tick(router)
                if self.authenticator is not None:
                    self.authenticator.reload()
                next_tick = now + interval

    def _serve_router(self, router: Router) -> None:
        with router.lock:
            if self.inflow.roomy:
                self.inflow.unpark(router)
            if router.unread:
                router.unread = False
                if router.socket is not None and self.inbound.read_router(router):
                    router.unread = True  # the budget ran out: read more next turn
            if router.queue or router.backlog:
                if router.queue:
                    router.send_queued()
                if router.backlog:
                    router.retry_backlog(self.outbox.max_queue)
                # A send may consume the fd's signal for input that came
                # meanwhile (and input on an active pipe signals no more).
                if router.socket is not None and router.has_input():
                    router.unread = True

    # --- shutdown -----------------------------------------------------------------

    def _shutdown(self) -> None:
        """Send what can be sent, fail the rest, close every socket."""
        outbox = self.outbox
        router = self.router
        if router is not None and router.queue:
            with router.lock:
                router.send_queued()
        live = self.links.shut()
        outbox.fail_all(PeerUnreachable("transport stopped"))
        hand_over(self.answered)
        self._close(live)

    def _close(self, live: set[Link]) -> None:
        # Links that were up get ``linger`` to put what was sent on the wire.
        linger = int(self.options.linger * 1000)
        self.links.close(live, linger)
        if self.router is not None:
            # Answers sent just now (to asks drained at a stop) are still in
            # ZeroMQ's queue: linger, or they are dropped unsent.
            self.router.close(linger)
        if self.authenticator is not None:
            self.authenticator.stop()
            self.authenticator = None
        if self.context is not None:
            self.context.term()
            self.context = None
        # Senders may still wake us (a tell after stop): they find no waker;
        # one that took it just now writes to a pipe closed only when unused.
        self.outbox.waker = None
