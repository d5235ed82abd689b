"""The I/O thread: the thread that runs this node's ZeroMQ sockets.

A thread doing a sync ask may borrow a link's socket while it holds
``Link.lock``; the I/O thread uses a link's socket only under that lock
too, and polls its file descriptor, never the socket itself.

It owns the bound ROUTER (inbound tells, asks and heartbeats from every
peer, answered on the same connection), one DEALER per peer (outbound
messages, their replies, heartbeat answers) and each DEALER's monitor
socket. One loop: poll, read everything ready, send the replies actors
posted, send what each peer's queue holds as one frame per batch, and every
``heartbeat_interval`` ping peers, mark the silent ones suspect and fail
asks past their deadline.

Socket options that make failures visible instead of silent:
ROUTER_MANDATORY (a reply to a vanished asker raises, becomes a dead
letter), high-water marks (bounded queues in ZeroMQ too) and MAXMSGSIZE (a
peer sending an oversized frame is disconnected by ZeroMQ itself).

Links do not set IMMEDIATE: with it, libzmq drops the replies a peer sent
just before it disconnected when we have not read them yet (a node that
answered and then stopped lost its last answers). The link's own state
keeps sends from going to a peer that is not connected: the I/O thread
sends only while the link is ``up`` (handshake done, no disconnect since).

The loop and the sockets' lifecycle live here; reading lives in
``inbound``, sending in ``outbound``, link states and heartbeats in
``liveness`` (mixins sharing the state declared in ``iostate``).
"""

from __future__ import annotations

import threading
from _thread import get_ident
from collections import deque
from typing import TYPE_CHECKING, Any

import zmq

from taskmesh.actors.future import Reply, forbid_waiting
from taskmesh.errors import PeerUnreachable, TransportError
from taskmesh.transport.counters import RateLimitedLog
from taskmesh.transport.envelope import (
    PING,
    PONG,
    encode_envelope,
    frame_prefix,
)
from taskmesh.transport.inbound import Inbound
from taskmesh.transport.iostate import (
    _BATCH_BYTES,
    _HEADER_SLACK,
    _MONITOR_EVENTS,
    _POLLIN,
    log,
)
from taskmesh.transport.link import CONNECTING, DOWN, UP, Link
from taskmesh.transport.liveness import Liveness
from taskmesh.transport.outbound import Outbound

if TYPE_CHECKING:
    from taskmesh.transport.transport import Transport, _Waker

__all__ = ["IOThread"]


class IOThread(Inbound, Outbound, Liveness):
    """Runs :meth:`run` in the transport's I/O thread; see the module doc."""

    def __init__(
        self,
        transport: Transport,
        context: zmq.Context[zmq.Socket[bytes]],
        waker: _Waker,
        listen: str | None,
    ) -> None:
        self.t = transport
        self.context = context
        self.waker = waker
        self.listen = listen
        self.ready = threading.Event()
        self.error: Exception | None = None
        self.bound = ""
        self.router: zmq.Socket[bytes] | None = None
        self.poller = zmq.Poller()
        self.links: list[Link] = []
        self.reply_backlog: dict[bytes, deque[tuple[bytes, int]]] = {}
        self.answered: list[tuple[Reply, list[Any]]] = []  # replies not yet handed over
        self.by_fd: dict[int, Link] = {}
        self.unpolled: set[Link] = set()  # links whose fd is out of the poll
        self.by_monitor: dict[zmq.Socket[bytes], Link] = {}
        self.prefix = b""
        self.pong = encode_envelope(PONG, None, 0, None, None, 1 << 10)
        self.ping = encode_envelope(PING, None, 0, None, None, 1 << 10)
        self.limited = RateLimitedLog(log, clock=transport.clock)
        # A frame holds at most one batch or one maximal message, plus headers.
        # A batch never holds more than one maximal message, so no frame is
        # longer than the cap plus the frame header; ZeroMQ drops a peer that
        # sends a longer one, and _too_long catches what the slack lets by.
        cap = transport.max_message_size
        self.batch_bytes = min(_BATCH_BYTES, cap)
        self.max_frame = cap + _HEADER_SLACK

    # --- setup --------------------------------------------------------------

    def _bind(self) -> None:
        t = self.t
        if self.listen is None:
            return
        router = self.context.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.setsockopt(zmq.SNDHWM, t.high_water_mark)
        router.setsockopt(zmq.RCVHWM, t.high_water_mark)
        router.setsockopt(zmq.MAXMSGSIZE, self.max_frame)
        if t.keys is not None:
            router.curve_secretkey = t.keys.secret_key
            router.curve_publickey = t.keys.public_key
            router.curve_server = True
        endpoint = self.listen
        if endpoint.startswith("tcp://") and endpoint.endswith(":0"):
            endpoint = endpoint[:-2] + ":*"
        try:
            router.bind(endpoint)
        except zmq.ZMQError as exc:
            router.close(0)
            raise TransportError(f"cannot listen on {self.listen}: {exc}") from exc
        self.bound = router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.router = router
        self.poller.register(router, _POLLIN)

    def _open(self, link: Link) -> None:
        t = self.t
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, t.high_water_mark)
        sock.setsockopt(zmq.RCVHWM, t.high_water_mark)
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_frame)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        sock.setsockopt(zmq.CONNECT_TIMEOUT, int(t.connect_timeout * 1000))
        if t.keys is not None and link.server_key is not None:
            sock.curve_secretkey = t.keys.secret_key
            sock.curve_publickey = t.keys.public_key
            sock.curve_serverkey = link.server_key
        monitor = sock.get_monitor_socket(_MONITOR_EVENTS)
        link.socket = sock
        link.monitor = monitor
        fd = sock.getsockopt(zmq.FD)
        assert isinstance(fd, int)
        link.fd = fd
        self.links.append(link)
        self.by_fd[link.fd] = link
        self.by_monitor[monitor] = link
        # The fd, not the socket: polling a socket uses it, and a thread doing
        # a sync ask may be using it (under link.lock) at the same time.
        self.poller.register(link.fd, _POLLIN)
        self.poller.register(monitor, _POLLIN)
        try:
            sock.connect(link.address)
        except zmq.ZMQError as exc:
            self._down(link, f"cannot connect: {exc}")

    # --- the loop -----------------------------------------------------------

    def run(self) -> None:
        """The I/O thread's body."""
        try:
            self._bind()
            self.prefix = frame_prefix(self.t._advertise or self.bound)
        except Exception as exc:
            self.error = exc
            self._close()
            self.ready.set()
            return
        self.poller.register(self.waker.fd, _POLLIN)
        me = get_ident()
        self.t._io_thread_id = me
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
        t = self.t
        clock = t.clock
        poll = self.poller.poll
        router = self.router
        waker_fd = self.waker.fd
        by_fd = self.by_fd
        replies = t._replies
        answered = self.answered
        interval = t.heartbeat_interval
        next_tick = clock() + interval
        while True:
            # Reset the flag before looking at the queues: a sender that
            # appends after this point sees it clear and wakes us.
            t._wake_pending = False
            if t._stopping:
                return
            while t._new_links:
                self._open(t._new_links.popleft())
            busy = bool(replies)
            retry = bool(self.reply_backlog)
            for link in self.links:
                if link.parked:
                    self._look(link)
                if link.parked or link.blocked:
                    retry = True
                elif link.queue and link.state != CONNECTING:
                    busy = True
            if answered:  # read by _look, a flush or a disconnect (a poll's go at once)
                self._answer(answered)
            if busy:
                timeout = 0
            elif retry:
                timeout = 1
            else:
                timeout = max(0, int((next_tick - clock()) * 1000) + 1)
            events = poll(timeout)
            # Awake until the top of the loop looks at the queues again: what
            # is queued meanwhile (a reply an inline actor just gave, too)
            # needs no wake-up.
            t._wake_pending = True
            for sock, event in events:
                if sock is router:
                    if event & _POLLIN:
                        self._read_router()
                elif sock == waker_fd:
                    self.waker.drain()
                else:
                    found = by_fd.get(sock)
                    if found is None:
                        self._read_monitor(sock)
                    elif found.lock.acquire(False):
                        try:
                            self._service(found, answered)
                        finally:
                            found.lock.release()
                        if answered:
                            # Start the askers' wake-up now: it takes longer
                            # than what this thread has left to do (measured).
                            self._answer(answered)
                    else:  # a sync asker holds the socket: poll its fd later
                        self.poller.unregister(sock)
                        self.unpolled.add(found)
                        found.parked = True
            if replies:
                self._send_replies()
            if self.reply_backlog:
                self._retry_replies()
            for link in self.links:
                if link.queue or link.carry is not None:
                    if link.state == UP:
                        if link.lock.acquire(False):
                            try:
                                self._flush(link)
                                self._service(link, answered)
                            finally:
                                link.lock.release()
                        # else the holder sends the queue before it lets go
                    elif link.state == DOWN:
                        with link.lock:
                            self._fail_queued(link)
            now = clock()
            if now >= next_tick:
                self._tick(now)
                next_tick = now + interval

    def _look(self, link: Link) -> None:
        """Poll a parked link's fd again and read what it holds, unless a
        sync asker still holds the socket."""
        if not link.lock.acquire(False):
            return
        try:
            link.parked = False
            if link in self.unpolled:
                self.unpolled.discard(link)
                self.poller.register(link.fd, _POLLIN)
            if link.socket is not None:
                self._service(link, self.answered)
        finally:
            link.lock.release()

    # --- shutdown -----------------------------------------------------------

    def _shutdown(self) -> None:
        """Send what can be sent, fail the rest, close every socket."""
        t = self.t
        if t._replies:
            self._send_replies()
        live = set()
        for link in self.links:
            if link.state == UP:
                live.add(link)
                with link.lock:
                    self._flush(link)
            link.reason = link.reason or "transport stopped"
            with link.lock:
                self._fail_queued(link)
            link.state = DOWN
        while t._new_links:
            link = t._new_links.popleft()
            link.state = DOWN
            link.reason = "transport stopped"
            self._fail_queued(link)
        exc = PeerUnreachable("transport stopped")
        for cid in list(t._pending):
            entry = t._pending.pop(cid, None)
            if entry is not None:
                entry[0].fail(exc)
        t._replies.clear()
        self._answer(self.answered)
        self._close(live)

    def _close(self, live: set[Link] | None = None) -> None:
        # Links that were up get ``linger`` to put what was sent on the wire.
        linger = int(self.t.linger * 1000)
        for link in self.links:
            if link.socket is not None:
                with link.lock:  # a sync asker finds None and leaves it alone
                    link.socket.disable_monitor()
                    link.socket.close(linger if live and link in live else 0)
                    link.socket = None
            if link.monitor is not None:
                link.monitor.close(0)
        if self.router is not None:
            # Replies sent just now (answers to asks drained at a stop) are
            # still in ZeroMQ's queue: linger, or they are dropped unsent.
            self.router.close(linger)
            self.router = None
