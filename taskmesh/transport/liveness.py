"""Link states and heartbeats: up, suspect, down, and back up.

A link's state follows its socket monitor's events; suspicion follows
heartbeats (:meth:`Liveness.tick`). Listeners registered with
``Transport.subscribe`` are called from here. Everything here runs on the
I/O thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import zmq
from zmq.utils.monitor import recv_monitor_message

from taskmesh.transport.counters import Counters, RateLimitedLog
from taskmesh.transport.envelope import PING, encode_envelope
from taskmesh.transport.inbound import Answered, Inbound
from taskmesh.transport.link import DOWN, UP, Link
from taskmesh.transport.outbound import fail_queued
from taskmesh.transport.outbox import Outbox

__all__ = ["Liveness"]

log = logging.getLogger("taskmesh.transport")


class Liveness:
    """Reacts to monitor events and runs the heartbeat tick.

    A peer that answers nothing (no frame at all, heartbeats included) for
    ``suspect_after`` seconds is reported ``suspect``; a link whose
    connection drops is ``down`` and fails what waits on it at once.
    """

    def __init__(
        self,
        outbox: Outbox,
        inbound: Inbound,
        counters: Counters,
        answered: Answered,
        *,
        suspect_after: float,
        stale_after: float,
        limited: RateLimitedLog,
        clock: Callable[[], float],
    ) -> None:
        self.outbox = outbox
        self.inbound = inbound
        self.counters = counters
        self.answered = answered
        self.suspect_after = suspect_after
        self.stale_after = stale_after
        self.limited = limited
        self.clock = clock
        self.ping = encode_envelope(PING, None, 0, None, None, 1 << 10)

    def read_monitor(self, link: Link) -> None:
        monitor = link.monitor
        assert monitor is not None
        while True:
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)["event"]
            except zmq.Again:
                return
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.up(link)
            elif event == zmq.EVENT_DISCONNECTED:
                # Answers the peer sent before it went away may be queued on
                # the link still: hand them over before failing what waits.
                # A sync asker may hold the socket: wait for it (it lets go
                # within its hold), it may be reading the last answer.
                with link.lock:
                    if link.socket is not None:
                        self.inbound.service(link, self.answered)
                self.down(link, "disconnected")
            elif event == zmq.EVENT_CONNECT_RETRIED:
                self.down(link, "connection refused or timed out")
            elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self.down(link, "authentication refused by the peer")
            else:
                self.down(link, "handshake failed")

    def emit(self, address: str, state: str) -> None:
        for listener in self.outbox.listeners:
            try:
                listener(address, state)
            except Exception:
                log.exception("peer listener failed")

    def up(self, link: Link) -> None:
        counters = self.counters
        was = link.state
        if link.suspect:
            link.suspect = False
            counters.suspect_peers -= 1
        with link.lock:
            link.blocked = False
            link.unanswered = 0  # answers sent before a reconnect will not come
            link.seen = False
            if was == DOWN:
                link.reset_credit()  # a new connection (maybe a new process) counts afresh
        link.state = UP
        link.reason = ""
        link.last_seen = self.clock()
        link.down_since = 0.0
        if was == DOWN:
            counters.peers_down -= 1
        log.info("link to %s is up", link.address)
        if link.queue:
            self.outbox.schedule(link)
        self.emit(link.address, UP)

    def down(self, link: Link, reason: str) -> None:
        counters = self.counters
        was = link.state
        link.reason = reason
        if was == DOWN:
            return
        link.state = DOWN
        link.down_since = self.clock()
        counters.peers_down += 1
        if link.suspect:
            link.suspect = False
            counters.suspect_peers -= 1
        with link.lock:
            link.blocked = False
            fail_queued(link, self.outbox)
        link.credit.set()  # senders waiting for credit see the link down
        self.outbox.fail_asks(link, self.outbox.unreachable(link))
        if was == UP:
            log.warning("link to %s is down: %s", link.address, reason)
        else:
            self.limited.warning(
                "down:" + link.address, "cannot reach %s: %s", link.address, reason
            )
        self.emit(link.address, DOWN)

    def _retire(self, link: Link) -> None:
        """Close a link that has been down for ``stale_after`` seconds with
        nothing queued: its peer left (or moved) for good, and reconnecting
        costs every second. A later ref to the address opens a fresh link."""
        outbox = self.outbox
        with outbox.links_lock:
            if outbox.links.get(link.address) is link:
                del outbox.links[link.address]
        link.down_since = 0.0
        outbox.forgotten.append(link)

    def tick(self, links: list[Link], now: float) -> None:
        """Heartbeats, suspicion, and asks past their deadline.

        A link that received nothing since the last tick sends a ping (the
        peer answers a pong); a busy link needs none. Heartbeats are not
        counted as messages.
        """
        counters = self.counters
        outbox = self.outbox
        for link in links:
            if link.state != UP:
                if (
                    link.state == DOWN
                    and link.down_since
                    and now - link.down_since > self.stale_after
                    and not link.queue
                ):
                    self._retire(link)
                continue
            if link.seen:
                link.seen = False
                link.last_seen = now
                if link.suspect:
                    link.suspect = False
                    counters.suspect_peers -= 1
                    log.info("peer %s answers again", link.address)
                    self.emit(link.address, UP)
                continue
            if not link.suspect and now - link.last_seen > self.suspect_after:
                link.suspect = True
                counters.suspect_peers += 1
                counters.suspect_events += 1
                log.warning(
                    "peer %s is suspect: no answer for %.1f s", link.address, now - link.last_seen
                )
                self.emit(link.address, "suspect")
            link.queue.append(self.ping)
            outbox.schedule(link)
        if outbox.pending:
            outbox.expire_asks(now)
