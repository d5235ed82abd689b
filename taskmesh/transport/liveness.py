"""Link states and heartbeats: up, suspect, down, and back up.

A link's state follows its socket monitor's events; suspicion follows
heartbeats (see :meth:`Liveness._tick`). Listeners registered with
``Transport.subscribe`` are called from here, on the I/O thread.
"""

from __future__ import annotations

import zmq
from zmq.utils.monitor import recv_monitor_message

from taskmesh.errors import AskTimeout, PeerUnreachable
from taskmesh.transport.iostate import IOState, log
from taskmesh.transport.link import DOWN, UP, Link

__all__ = ["Liveness"]


class Liveness(IOState):
    """Reacting to monitor events and the heartbeat tick."""

    def _read_monitor(self, monitor: zmq.Socket[bytes]) -> None:
        link = self.by_monitor.get(monitor)
        if link is None:
            return
        while True:
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)["event"]
            except zmq.Again:
                return
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._up(link)
            elif event == zmq.EVENT_DISCONNECTED:
                # Replies the peer sent before it went away may be queued on
                # the link still: hand them over before failing what waits.
                if link.socket is not None and link.lock.acquire(False):
                    try:
                        self._service(link, self.answered)
                    finally:
                        link.lock.release()
                self._down(link, "disconnected")
            elif event == zmq.EVENT_CONNECT_RETRIED:
                self._down(link, "connection refused or timed out")
            elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self._down(link, "authentication refused by the peer")
            else:
                self._down(link, "handshake failed")

    def _emit(self, address: str, state: str) -> None:
        for listener in self.t._listeners:
            try:
                listener(address, state)
            except Exception:
                log.exception("peer listener failed")

    def _up(self, link: Link) -> None:
        counters = self.t.counters
        was = link.state
        if link.suspect:
            link.suspect = False
            counters.suspect_peers -= 1
        link.state = UP
        link.reason = ""
        link.blocked = False
        link.seen = False
        link.last_seen = self.t.clock()
        if was == DOWN:
            counters.peers_down -= 1
        log.info("link to %s is up", link.address)
        self._emit(link.address, UP)

    def _down(self, link: Link, reason: str) -> None:
        counters = self.t.counters
        was = link.state
        link.reason = reason
        if was == DOWN:
            return
        link.state = DOWN
        counters.peers_down += 1
        if link.suspect:
            link.suspect = False
            counters.suspect_peers -= 1
        link.blocked = False
        with link.lock:
            self._fail_queued(link)
        exc = PeerUnreachable(f"{link.address} is unreachable: {reason}")
        pending = self.t._pending
        for cid, entry in list(pending.items()):
            if entry[1] is link and pending.pop(cid, None) is not None:
                entry[0].fail(exc)
        if was == UP:
            log.warning("link to %s is down: %s", link.address, reason)
        else:
            self.limited.warning(
                "down:" + link.address, "cannot reach %s: %s", link.address, reason
            )
        self._emit(link.address, DOWN)

    def _tick(self, now: float) -> None:
        """Heartbeats, suspicion, and asks past their deadline.

        A link that received nothing since the last tick sends a ping (the
        peer answers a pong); a busy link needs none. Heartbeats are not
        counted as messages.
        """
        t = self.t
        t._reload_keys()
        counters = t.counters
        for link in self.links:
            if link.state != UP:
                continue
            if link.seen:
                link.seen = False
                link.last_seen = now
                if link.suspect:
                    link.suspect = False
                    counters.suspect_peers -= 1
                    log.info("peer %s answers again", link.address)
                    self._emit(link.address, UP)
                continue
            if not link.suspect and now - link.last_seen > t.suspect_after:
                link.suspect = True
                counters.suspect_peers += 1
                counters.suspect_events += 1
                log.warning(
                    "peer %s is suspect: no answer for %.1f s", link.address, now - link.last_seen
                )
                self._emit(link.address, "suspect")
            link.queue.append(self.ping)
            counters.messages_out -= 1  # counted back when sent
        pending = t._pending
        if pending:
            expired = AskTimeout
            for cid, entry in list(pending.items()):
                if entry[2] < now and pending.pop(cid, None) is not None:
                    entry[0].fail(expired("no reply before the deadline"))
