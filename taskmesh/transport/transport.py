"""The node's ZeroMQ transport: remote tell and ask between processes.

Threads: the ZeroMQ sockets belong to one I/O thread (see
:mod:`taskmesh.transport.iothread`). Other threads (callers of ``tell`` and
``ask``, actors answering remote asks) encode their envelope themselves,
append it to a deque and wake the I/O thread through a file descriptor,
but only if no wake-up is pending already: while the I/O thread is busy,
a burst of messages costs one wake-up, and the I/O thread sends all that
queued up as one frame per peer.

One exception, for speed: a thread doing a sync ask borrows the peer
link's socket when it is free (``Link.lock``), sends the queue itself and
reads its answer, sparing two wake-ups (see :meth:`Transport._lead`).
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from _thread import get_ident
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq
import zmq.auth.thread

from taskmesh.actors.future import Reply, ReplyTo
from taskmesh.errors import (
    ActorError,
    ActorNotFound,
    AskTimeout,
    ConfigError,
    PeerUnreachable,
    TransportError,
)
from taskmesh.transport.counters import Counters
from taskmesh.transport.envelope import ASK, TELL, decode_frame, encode_envelope
from taskmesh.transport.link import DOWN, UP, Link
from taskmesh.transport.ref import RemoteRef
from taskmesh.transport.security import CurveKeys

if TYPE_CHECKING:
    from taskmesh.transport.iothread import IOThread

__all__ = ["DeadLetterCallback", "Deliver", "PeerListener", "Transport"]

_LEAD_HOLD = 0.001  # s a sync asker may keep a link's socket waiting for its answer
_POLLIN = int(zmq.POLLIN)
_zmq_poll = zmq.zmq_poll

log = logging.getLogger("taskmesh.transport")

Deliver = Callable[..., None]
"""``deliver(target, message, reply, deadline[, idempotency_key])``: hand an
inbound message to the local actors. Runs on the I/O thread; must only
enqueue, never block. Raises ActorNotFound or MailboxFull for an ask
(``reply`` not None); for a tell it records dead letters itself. The fifth
argument is passed only for an ask sent with an idempotency key."""

DeadLetterCallback = Callable[[str, Any, str], None]
"""``dead_letter(recipient, message, reason)`` for a message this transport
could not deliver. Runs on the sending thread or the I/O thread."""

PeerListener = Callable[[str, str], None]
"""``listener(address, state)``, state ``up``, ``suspect`` or ``down``.
Runs on the I/O thread: keep it short, never block."""


def _no_actors(
    target: str,
    message: Any,
    reply: ReplyTo | None,
    deadline: float | None,
    idempotency_key: str | None = None,
) -> None:
    raise ActorNotFound(f"no actor named {target!r}: this process hosts no actors")


class _Waker:
    """A pipe the I/O thread polls; any thread may write to it to wake it.

    A pipe rather than an eventfd: Linux wakes a pipe's reader "synchronously"
    (a hint that the writer is about to block), so the I/O thread tends to
    run on the waking thread's CPU; on the 2-core machine measured, that
    made a wake-up about a third cheaper than an eventfd's.
    """

    def __init__(self) -> None:
        self.fd, self._write_fd = os.pipe()
        os.set_blocking(self.fd, False)
        os.set_blocking(self._write_fd, False)

    def wake(self) -> None:
        try:
            os.write(self._write_fd, b"\0")
        except BlockingIOError:  # full: the I/O thread has wake-ups queued
            return

    def drain(self) -> None:
        try:
            os.read(self.fd, 4096)
        except BlockingIOError:
            return

    def close(self) -> None:
        os.close(self.fd)
        os.close(self._write_fd)


class Transport:
    """One node's (or client's) endpoint in the mesh.

    ``listen`` is the ZeroMQ endpoint the inbound ROUTER binds (port ``0``
    picks a free one; ``None`` for a client that only sends); ``address``
    is what peers dial, read back after :meth:`start`. ``deliver`` hands
    inbound messages to local actors (see :data:`Deliver`). ``keys`` turns
    on CURVE. ``max_message_size`` bounds one encoded message; every node
    of a mesh should use the same value. ``max_queue`` bounds the messages
    waiting for one peer; a sender finding it full waits up to
    ``send_timeout`` seconds, then the message is a dead letter (tell) or
    :class:`PeerUnreachable` (ask). A peer that answers no heartbeat
    (sent every ``heartbeat_interval`` s) for ``suspect_after`` s is
    reported ``suspect`` to :meth:`subscribe` listeners.
    """

    def __init__(
        self,
        *,
        listen: str | None = "tcp://127.0.0.1:0",
        deliver: Deliver | None = None,
        dead_letter: DeadLetterCallback | None = None,
        keys: CurveKeys | None = None,
        advertise: str | None = None,
        max_message_size: int = 1 << 20,
        max_queue: int = 10_000,
        send_timeout: float = 1.0,
        heartbeat_interval: float = 0.2,
        suspect_after: float = 0.9,
        connect_timeout: float = 1.0,
        high_water_mark: int = 1000,
        linger: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_message_size < 64:
            raise ConfigError("max_message_size must be at least 64 bytes")
        if max_queue < 1:
            raise ConfigError("max_queue must be at least 1")
        self._listen = listen
        self._deliver: Deliver = deliver or _no_actors
        self._dead_letter_cb = dead_letter
        self.keys = keys
        self._advertise = advertise
        self.max_message_size = max_message_size
        self.max_queue = max_queue
        self.send_timeout = send_timeout
        self.heartbeat_interval = heartbeat_interval
        self.suspect_after = suspect_after
        self.connect_timeout = connect_timeout
        self.high_water_mark = high_water_mark
        self.linger = linger
        self.clock = clock
        self.counters = Counters()
        self.address = ""
        # Shared with the I/O thread:
        self._links: dict[str, Link] = {}
        self._links_lock = threading.Lock()
        self._new_links: deque[Link] = deque()
        self._pending: dict[int, tuple[Reply, Link, float]] = {}
        self._replies: deque[tuple[bytes, bytes]] = deque()
        self._listeners: list[PeerListener] = []
        self._cids = itertools.count(1)
        self._wake_pending = False
        self._io_thread_id = 0
        self._stopping = False
        self._waker: _Waker | None = None
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._auth: zmq.auth.thread.ThreadAuthenticator | None = None
        self._keys_mtime = 0
        self._thread: threading.Thread | None = None
        self._io: IOThread | None = None

    # --- lifecycle (caller's thread) -------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Bind, start the I/O thread and return once ``address`` is known."""
        from taskmesh.transport.iothread import IOThread

        if self._thread is not None:
            raise TransportError("transport already started")
        self._context = zmq.Context()
        if self.keys is not None:
            self._auth = zmq.auth.thread.ThreadAuthenticator(self._context, log=log)
            self._auth.start()
            self._auth.configure_curve(domain="*", location=str(self.keys.authorized))
            self._keys_mtime = self._authorized_mtime()
        self._waker = _Waker()
        io = IOThread(self, self._context, self._waker, self._listen)
        self._io = io
        self._thread = threading.Thread(target=io.run, name="taskmesh-transport-io", daemon=True)
        self._thread.start()
        if not io.ready.wait(timeout):
            raise TransportError("transport I/O thread did not start")
        if io.error is not None:
            self._thread.join()
            self._cleanup()
            raise io.error
        self.address = self._advertise or io.bound

    def stop(self, timeout: float = 10.0) -> None:
        """Stop: send what is queued to peers that are up (ZeroMQ gets
        ``linger`` seconds to put it on the wire), fail pending asks,
        dead-letter the rest, close sockets."""
        thread = self._thread
        if thread is None or self._stopping:
            return
        self._stopping = True
        self._wake()
        thread.join(timeout)
        self._cleanup()

    def _authorized_mtime(self) -> int:
        if self.keys is None:
            return 0
        try:
            return self.keys.authorized.stat().st_mtime_ns
        except OSError:
            return self._keys_mtime

    def _reload_keys(self) -> None:
        """Re-read the authorized keys if a key was added to or removed from
        their directory (I/O thread, every heartbeat tick). They apply to
        new connections; a connection already made stays."""
        auth, keys = self._auth, self.keys
        if auth is None or keys is None:
            return
        mtime = self._authorized_mtime()
        if mtime == self._keys_mtime:
            return
        self._keys_mtime = mtime
        try:
            auth.configure_curve(domain="*", location=str(keys.authorized))
        except Exception as exc:  # a broken key file: keep the keys we had
            log.warning("could not re-read authorized keys in %s: %s", keys.authorized, exc)
            return
        log.info("re-read authorized keys in %s", keys.authorized)

    def _cleanup(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._context is not None:
            self._context.term()
            self._context = None
        waker, self._waker = self._waker, None
        if waker is not None:
            waker.close()

    def __enter__(self) -> Transport:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- public API (any thread) -----------------------------------------

    def ref(self, address: str, name: str, *, server_key: bytes | None = None) -> RemoteRef:
        """A reference to actor ``name`` at the peer listening on ``address``.

        ``server_key`` is the peer's CURVE public key (Z85), needed when this
        transport has keys. The link is opened on first use and kept.
        """
        return RemoteRef(self, self._link(address, server_key), name)

    def subscribe(self, listener: PeerListener) -> None:
        """Call ``listener(address, state)`` when a peer link goes ``up``,
        ``suspect`` (no heartbeat answer for ``suspect_after`` seconds) or
        ``down``. Runs on the I/O thread."""
        self._listeners.append(listener)

    def peer_state(self, address: str) -> str | None:
        """``connecting``, ``up``, ``suspect``, ``down``, or None if unknown."""
        link = self._links.get(address)
        if link is None:
            return None
        return "suspect" if link.suspect and link.state != DOWN else link.state

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued outbound message was handed to ZeroMQ
        (or dead-lettered); True if that happened within ``timeout`` s.

        ``stop`` then gives ZeroMQ up to ``linger`` seconds to put them on
        the wire. Polls: it is for the end of a short-lived client.
        """
        deadline = self.clock() + timeout
        while True:
            if not self._replies and all(
                not link.queue and link.carry is None for link in list(self._links.values())
            ):
                return True
            if self.clock() >= deadline or self._thread is None or self._stopping:
                return False
            time.sleep(0.001)

    def snapshot(self) -> dict[str, Any]:
        """Counters as a plain dict, plus pending asks and peer states."""
        snap = self.counters.snapshot()
        snap["asks_pending"] = len(self._pending)
        snap["peers"] = {a: self.peer_state(a) for a in list(self._links)}
        return snap

    # --- sending (caller's thread) ----------------------------------------

    def _link(self, address: str, server_key: bytes | None) -> Link:
        link = self._links.get(address)
        if link is not None:
            return link
        if self.keys is not None and server_key is None:
            raise ConfigError(f"CURVE is on: give the server_key of {address}")
        with self._links_lock:
            link = self._links.get(address)
            if link is None:
                link = Link(address, server_key)
                self._links[address] = link
                self._new_links.append(link)
                self._wake()
        return link

    def _wake(self) -> None:
        if not self._wake_pending:
            self._wake_pending = True
            waker = self._waker
            if waker is not None:
                waker.wake()

    def _enqueue(self, link: Link, data: bytes, wake: bool = True) -> bool:
        queue = link.queue
        if len(queue) >= self.max_queue and not self._wait_for_space(link):
            return False
        queue.append(data)
        if wake and not self._wake_pending:
            self._wake_pending = True
            waker = self._waker
            if waker is not None:
                waker.wake()
        return True

    def _wait_for_space(self, link: Link) -> bool:
        if get_ident() == self._io_thread_id:
            return False  # an inline actor: only this thread could make space
        deadline = self.clock() + self.send_timeout
        while len(link.queue) >= self.max_queue:
            remaining = deadline - self.clock()
            if link.state == DOWN or remaining <= 0 or self._stopping:
                return False
            link.space.clear()
            if len(link.queue) < self.max_queue:
                break
            link.space.wait(remaining)
        return True

    def _tell(self, link: Link, target: str, message: Any) -> None:
        data = encode_envelope(TELL, target, 0, None, message, self.max_message_size)
        if link.state == DOWN or self._stopping:
            self.dead_letter(link.address, target, message, "peer_unreachable")
        elif not self._enqueue(link, data):
            reason = "peer_unreachable" if link.state == DOWN else "queue_full"
            self.dead_letter(link.address, target, message, reason)

    def _ask(
        self,
        link: Link,
        target: str,
        message: Any,
        timeout: float | None,
        key: str | None = None,
        wake: bool = True,
    ) -> tuple[int, Reply]:
        cid = next(self._cids)
        if timeout is None:
            data = encode_envelope(ASK, target, cid, None, message, self.max_message_size, key)
            deadline = float("inf")
        else:
            ms = int(timeout * 1000)
            data = encode_envelope(ASK, target, cid, ms, message, self.max_message_size, key)
            deadline = self.clock() + timeout
        if link.state == DOWN or self._stopping:
            raise PeerUnreachable(f"{link.address} is unreachable: {link.reason or 'stopped'}")
        reply = Reply()
        self._pending[cid] = (reply, link, deadline)
        if not self._enqueue(link, data, wake):
            self._pending.pop(cid, None)
            if link.state == DOWN:
                raise PeerUnreachable(f"{link.address} is unreachable: {link.reason}")
            raise PeerUnreachable(f"queue to {link.address} is full ({self.max_queue} messages)")
        return cid, reply

    def _ask_sync(
        self, link: Link, target: str, message: Any, timeout: float | None, key: str | None
    ) -> Any:
        if get_ident() == self._io_thread_id:
            raise ActorError(
                "cannot ask synchronously on the transport's I/O thread: an inline "
                "actor must not block; use tell or ask_async"
            )
        cid, reply = self._ask(link, target, message, timeout, key, wake=False)
        if not self._lead(link, reply, timeout):
            self._wake()
        try:
            return reply.get(timeout)
        except AskTimeout:
            self._pending.pop(cid, None)
            raise

    def _lead(self, link: Link, reply: Reply, timeout: float | None) -> bool:
        """Send a sync ask and read its answer in the asking thread.

        Saves the two hand-offs to and from the I/O thread (a wake-up each).
        Only if the link is up and its socket free (``link.lock``); False
        otherwise, and the I/O thread must be woken to send. Holds the socket
        for at most ``_LEAD_HOLD`` s (other threads' messages to this peer
        wait meanwhile, and are sent before it lets go); a slower answer is
        then read by the I/O thread. Returns True once the queue was sent.
        """
        io = self._io
        if io is None or link.state != UP or link.blocked or self._stopping:
            return False
        lock = link.lock
        if not lock.acquire(False):
            return False
        sock = link.socket
        answered: list[tuple[Reply, list[Any]]] = []
        try:
            if sock is None or link.state != UP:
                return False
            io._flush(link)
            hold = _LEAD_HOLD if timeout is None else min(_LEAD_HOLD, timeout)
            items = [(sock, _POLLIN)]
            end = self.clock() + hold
            while True:
                io._service(link, answered)  # answers are handed over after the lock
                if reply.done() or link.blocked or link.state != UP:
                    break
                if any(got is reply for got, _ in answered):
                    break
                if link.queue:
                    io._flush(link)
                left = end - self.clock()
                if left <= 0:
                    break
                _zmq_poll(items, max(1, int(left * 1000)))
        finally:
            if link.queue and link.carry is None and sock is not None and link.state == UP:
                io._flush(link)
            if sock is not None:
                io._service(link, answered)
            lock.release()
            if answered:
                io._answer(answered)
        if link.parked or link.queue or link.carry is not None:
            self._wake()
        return True

    def dead_letter(self, address: str, target: str, message: Any, reason: str) -> None:
        """Count and report one undelivered message; any thread."""
        self.counters.dead_letter(reason)
        callback = self._dead_letter_cb
        if callback is not None:
            try:
                callback(f"{address}/{target}", message, reason)
            except Exception:
                log.exception("dead letter callback failed")

    def _dead_envelopes(
        self, address: str, envelopes: list[bytes], reason: str, exc: Exception
    ) -> None:
        """Fail asks and dead-letter tells that were queued but never sent."""
        for data in envelopes:
            try:
                kind, target, cid, _, payload = decode_frame(b"\x93\x01\xa0" + data)[2][:5]
            except Exception:
                continue
            if kind == ASK:
                entry = self._pending.pop(cid, None)
                if entry is not None:
                    entry[0].fail(exc)
            elif kind == TELL:
                self.dead_letter(address, str(target), payload, reason)
