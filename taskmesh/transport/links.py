"""The I/O thread's work on links: open, send, read, watch, close.

A link's socket belongs to whoever holds ``Link.lock``; everything here
runs on the I/O thread, which takes the lock without waiting (a sync asker
holding it sends the queue itself, and hands the link back through
``Outbox.attention``) except where a method says so. See
:mod:`~taskmesh.transport.iothread` for the fd rule these follow.
"""

from __future__ import annotations

import logging
from typing import Final

import zmq

from taskmesh.transport.counters import Counters
from taskmesh.transport.inbound import Answered, Inbound
from taskmesh.transport.link import CONNECTING, DOWN, UP, Link
from taskmesh.transport.liveness import Liveness
from taskmesh.transport.outbound import fail_queued, flush
from taskmesh.transport.outbox import Outbox
from taskmesh.transport.sockets import Context, SocketOptions, open_dealer

__all__ = ["Links"]

_POLLIN: Final = int(zmq.POLLIN)

log = logging.getLogger("taskmesh.transport")


class Links:
    """Every open link, and the fds the I/O thread polls for them (I/O thread only)."""

    def __init__(
        self,
        outbox: Outbox,
        inbound: Inbound,
        liveness: Liveness,
        counters: Counters,
        answered: Answered,
        poller: zmq.Poller,
        options: SocketOptions,
        batch_bytes: int,
    ) -> None:
        self.outbox = outbox
        self.inbound = inbound
        self.liveness = liveness
        self.counters = counters
        self.answered = answered
        self.poller = poller
        self.options = options
        self.batch_bytes = batch_bytes
        self.prefix = b""  # every frame's ``version, sender`` header, once bound
        self.links: list[Link] = []
        self.by_fd: dict[int, Link] = {}
        self.by_monitor: dict[zmq.Socket[bytes], Link] = {}
        self.blocked: set[Link] = set()  # a send was refused: retried every millisecond

    def open(self, link: Link, context: Context) -> None:
        """Make the link's socket and connect it."""
        sock, monitor = open_dealer(context, self.options, link.server_key)
        fd = sock.getsockopt(zmq.FD)
        assert isinstance(fd, int)
        with link.lock:
            link.socket = sock
            link.monitor = monitor
            link.fd = fd
        self.links.append(link)
        self.by_fd[fd] = link
        self.by_monitor[monitor] = link
        self.poller.register(monitor, _POLLIN)
        try:
            sock.connect(link.address)
        except zmq.ZMQError as exc:
            self.liveness.down(link, f"cannot connect: {exc}")
            return
        # The monitor's descriptor is signalled only once a read has found
        # its pipe empty: read it now, so its first event wakes the poll.
        self.liveness.read_monitor(link)

    def send(self, link: Link) -> None:
        """Send what ``link`` has queued, unless a sync asker holds its
        socket (it sends the queue and schedules the link again if need
        be), and fail it if the link is down."""
        state = link.state
        if state == CONNECTING:
            return  # Liveness.up schedules it
        if state == DOWN:
            with link.lock:
                fail_queued(link, self.outbox)
            self.blocked.discard(link)
            return
        if not link.lock.acquire(False):
            return
        try:
            if link.socket is not None:
                flush(link, self.prefix, self.batch_bytes)
                if link.polled and self.inbound.service(link, self.answered):
                    # A send may consume the fd's signal: look at what came.
                    self.outbox.attention.append(link)
                self.watch(link)
        finally:
            link.lock.release()

    def _take(self, link: Link) -> bool:
        """Take the link's socket without waiting. If another thread holds
        it (a sync asker), park the link: its fd leaves the poll set (it
        would wake us for every answer that thread reads itself), and the
        holder hands the link back as it lets go (``Outbox.let_go``).
        Trying again after marking closes the race with a holder that let
        go just before."""
        lock = link.lock
        if lock.acquire(False):
            return True
        if link.polled:
            self.poller.unregister(link.fd)
            link.polled = False
        link.parked = True
        if not lock.acquire(False):
            return False
        link.parked = False
        return True

    def attend(self, link: Link) -> None:
        """Look at a link whose fd is readable, or that a sync asker left
        with answers due or handed back after it was parked: read what it
        holds and watch its fd if need be. Held by another thread
        meanwhile, it is parked (see :meth:`_take`)."""
        if not self._take(link):
            return
        try:
            if link.socket is not None:
                if self.inbound.service(link, self.answered):
                    self.outbox.attention.append(link)  # more to read: next turn
                self.watch(link)
        finally:
            link.lock.release()

    def watch(self, link: Link) -> None:
        """Poll the link's fd exactly while someone must read it; the caller
        holds ``link.lock``. Registering reads what is already there, since
        the fd's signal may have been consumed while it was not polled."""
        if link.needs_reader():
            if link.blocked or link.carry is not None:
                self.blocked.add(link)
            else:
                self.blocked.discard(link)
            if not link.polled and link.state != DOWN:
                self.poller.register(link.fd, _POLLIN)
                link.polled = True
                self.inbound.service(link, self.answered)
        else:
            self.blocked.discard(link)
            if link.polled:
                self.poller.unregister(link.fd)
                link.polled = False

    def forget(self, link: Link) -> None:
        """Close a link whose peer left or moved (Transport.forget)."""
        counters = self.counters
        if link.state == DOWN:
            counters.peers_down -= 1
        if link.suspect:
            link.suspect = False
            counters.suspect_peers -= 1
        with link.lock:
            link.state = DOWN
            link.reason = "its node left the cluster or moved to another address"
            fail_queued(link, self.outbox)
            sock, link.socket = link.socket, None
        link.credit.set()  # senders waiting for credit see it gone
        self.outbox.fail_asks(link, self.outbox.unreachable(link))
        if link.polled:
            self.poller.unregister(link.fd)
            link.polled = False
        self.by_fd.pop(link.fd, None)
        self.blocked.discard(link)
        if link in self.links:
            self.links.remove(link)
        monitor, link.monitor = link.monitor, None
        if monitor is not None:
            self.by_monitor.pop(monitor, None)
            self.poller.unregister(monitor)
        if sock is not None:
            sock.disable_monitor()
            sock.close(0)
        if monitor is not None:
            monitor.close(0)
        log.info("closed the link to %s: %s", link.address, link.reason)

    def retry(self) -> None:
        """Retry refused sends (every turn while any is left; the loop
        polls with a 1 ms timeout meanwhile)."""
        for link in list(self.blocked):
            self.send(link)

    def unpark(self) -> None:
        """Look at links still parked (each heartbeat tick): a safety net,
        since whoever held the socket hands its link back as it lets go."""
        for link in self.links:
            if link.parked:
                link.parked = False
                self.attend(link)

    def shut(self) -> set[Link]:
        """At a stop: send what can be sent, fail the rest; returns the links
        that were up (they get ``linger`` to put it on the wire)."""
        live = set()
        outbox = self.outbox
        for link in self.links:
            with link.lock:
                if link.state == UP and link.socket is not None:
                    live.add(link)
                    flush(link, self.prefix, self.batch_bytes)
                link.reason = link.reason or "transport stopped"
                fail_queued(link, outbox)
            link.state = DOWN
        while outbox.new_links:
            link = outbox.new_links.popleft()
            link.state = DOWN
            link.reason = "transport stopped"
            fail_queued(link, outbox)
        return live

    def close(self, live: set[Link], linger_ms: int) -> None:
        """Close every link's socket and monitor."""
        for link in self.links:
            with link.lock:  # a sync asker finds None and leaves it alone
                sock, link.socket = link.socket, None
            if sock is not None:
                sock.disable_monitor()
                sock.close(linger_ms if link in live else 0)
            if link.monitor is not None:
                link.monitor.close(0)
