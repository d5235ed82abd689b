"""The outbox: the state that sending threads and the I/O thread share.

Sending threads (callers of ``tell``/``ask``, actors answering remote asks)
encode their envelopes themselves and hand them over here; the I/O thread
takes them out and puts them on the wire. Everything they share lives in
this one object, and each field says who writes it. The rules that make it
safe without a lock on the hot path: deque ``append``/``popleft`` and dict
``get``/``pop``/item assignment are atomic under the GIL, and each flag has
one writer per transition (see ``wake``).
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import weakref
from _thread import get_ident
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from taskmesh.actors.future import Reply, no_waiting_on
from taskmesh.actors.traced import untraced
from taskmesh.errors import AskTimeout, ConfigError, PeerUnreachable
from taskmesh.transport.envelope import ASK, TELL, decode_envelope
from taskmesh.transport.link import DOWN, Link

__all__ = ["DeadLetterSink", "Outbox", "PeerListener", "Waker"]

log = logging.getLogger("taskmesh.transport")

PeerListener = Callable[[str, str], None]
"""``listener(address, state)``, state ``up``, ``suspect`` or ``down``.
Runs on the I/O thread: keep it short, never block."""


class DeadLetterSink(Protocol):
    """Where undelivered messages go: the node's (or client's) one
    :class:`~taskmesh.actors.deadletters.DeadLetters` store. ``record`` is
    called from the sending thread or the I/O thread."""

    def record(self, recipient: str, message: Any, reason: str, error: str = "") -> None: ...


class Waker:
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
        # Closed when the waker is garbage, never before: a thread may still
        # hold it and wake a stopped transport, and a closed descriptor's
        # number may be reused by another file by then. A full pipe is fine.
        self._closer = weakref.finalize(self, _close_pipe, self.fd, self._write_fd)

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


def _close_pipe(read_fd: int, write_fd: int) -> None:
    os.close(read_fd)
    os.close(write_fd)


Pending = tuple[Reply, Link, float]
"""An ask awaiting its answer: the asker's future, the link it went out on,
and its monotonic deadline (``inf`` for none)."""


class Outbox:
    """Queues, pending asks and the wake-up protocol of one transport.

    ``max_queue`` bounds the envelopes waiting for one peer; a sender finding
    it full waits up to ``send_timeout`` s for room.
    """

    def __init__(
        self,
        *,
        max_queue: int,
        send_timeout: float,
        clock: Callable[[], float],
        dead_letters: DeadLetterSink,
        window: int = 0,
    ) -> None:
        if max_queue < 1:
            raise ConfigError("max_queue must be at least 1")
        self.max_queue = max_queue
        self.send_timeout = send_timeout
        self.window = window
        self.clock = clock
        self.dead_letters = dead_letters
        # Written under ``links_lock`` by senders; read by anyone.
        self.links: dict[str, Link] = {}
        self.links_lock = threading.Lock()
        # Appended by senders, taken by the I/O thread:
        self.new_links: deque[Link] = deque()  # links whose socket must be opened
        self.ready: deque[Link] = deque()  # links with queued envelopes
        self.attention: deque[Link] = deque()  # links a sync asker left with answers due
        self.forgotten: deque[Link] = deque()  # links to close: down too long (Liveness)
        # Added by askers; popped by whoever reads the answer, expires or fails it.
        self.pending: dict[int, Pending] = {}
        self.listeners: list[PeerListener] = []
        self._cids = itertools.count(1)
        # The wake-up protocol: a sender wakes the I/O thread only if no wake-up
        # is pending. The I/O thread clears the flag before it looks at the
        # queues and sets it again when its poll returns, so that a burst of
        # messages costs one wake-up (and none while it is awake).
        self.wake_pending = False
        self.stopping = False  # set once, by Transport.stop
        self.io_thread = 0  # the I/O thread's id, set once it runs
        self.waker: Waker | None = None

    # --- any thread ----------------------------------------------------------

    def wake(self) -> None:
        """Wake the I/O thread unless a wake-up is pending already."""
        if not self.wake_pending:
            self.wake_pending = True
            waker = self.waker
            if waker is not None:
                waker.wake()

    def link(self, address: str, server_key: bytes | None) -> Link:
        """The link to ``address``, made (and its socket opened) on first use."""
        link = self.links.get(address)
        if link is not None:
            return link
        with self.links_lock:
            link = self.links.get(address)
            if link is None:
                link = Link(address, server_key, self.window)
                self.links[address] = link
                self.new_links.append(link)
                self.wake()
        return link

    def schedule(self, link: Link) -> None:
        """Tell the I/O thread that ``link`` has queued envelopes.

        The I/O thread clears ``scheduled`` before it drains the queue, so a
        sender appending after the drain sees it clear and schedules again.
        """
        if not link.scheduled:
            link.scheduled = True
            self.ready.append(link)
        if not self.wake_pending:
            self.wake()

    def let_go(self, link: Link) -> None:
        """Release ``link.lock`` (held by a thread other than the I/O
        thread). If the I/O thread found the socket held meanwhile, it
        parked the link (stopped polling its fd): hand it back, so what
        came for others is read now, with no polling meanwhile."""
        link.lock.release()
        if link.parked:
            link.parked = False
            self.attention.append(link)
            self.wake()

    def enqueue(self, link: Link, data: bytes, *, wake: bool = True) -> bool:
        """Queue one encoded envelope for ``link``; False if it cannot be
        (the link went down, the transport stops, or no room came within
        ``send_timeout``). Without ``wake`` the caller sends the queue itself
        (a sync asker) or schedules it."""
        queue = link.queue
        if len(queue) >= self.max_queue and not self._wait_for_space(link):
            return False
        queue.append(data)
        if wake:
            self.schedule(link)
        return True

    def _wait_for_space(self, link: Link) -> bool:
        if no_waiting_on(get_ident()) is not None:
            return False  # the I/O thread (only it could make room) or an event loop
        deadline = self.clock() + self.send_timeout
        while len(link.queue) >= self.max_queue:
            remaining = deadline - self.clock()
            if link.state == DOWN or remaining <= 0 or self.stopping:
                return False
            link.space.clear()
            if len(link.queue) < self.max_queue:
                break
            link.space.wait(remaining)
        return True

    def next_cid(self) -> int:
        """A correlation id for a new ask."""
        return next(self._cids)

    def dead_letter(self, recipient: str, message: Any, reason: str, error: str = "") -> None:
        """Record one undelivered message in the one dead-letter store."""
        try:
            self.dead_letters.record(recipient, untraced(message), reason, error)
        except Exception:
            log.exception("recording a dead letter failed")

    # --- pending asks (askers, readers, the I/O thread) ----------------------

    def fail_asks(self, link: Link, exc: Exception) -> None:
        """Fail every ask waiting for an answer over ``link``."""
        pending = self.pending
        for cid, entry in list(pending.items()):
            if entry[1] is link and pending.pop(cid, None) is not None:
                entry[0].fail(exc)

    def expire_asks(self, now: float) -> None:
        """Fail the asks whose deadline has passed (I/O thread, each tick)."""
        pending = self.pending
        for cid, entry in list(pending.items()):
            if entry[2] < now and pending.pop(cid, None) is not None:
                entry[0].fail(AskTimeout("no reply before the deadline"))

    def fail_all(self, exc: Exception) -> None:
        """Fail every pending ask (the transport stops)."""
        pending = self.pending
        for cid in list(pending):
            entry = pending.pop(cid, None)
            if entry is not None:
                entry[0].fail(exc)

    def dead_envelopes(
        self, address: str, envelopes: Iterable[bytes], reason: str, exc: Exception
    ) -> None:
        """Fail the asks and dead-letter the tells among envelopes that were
        queued for ``address`` but never sent."""
        for data in envelopes:
            env = decode_envelope(data)
            if env is None:
                continue
            kind, target, cid, _, payload = env[:5]
            if kind == ASK:
                entry = self.pending.pop(cid, None)
                if entry is not None:
                    entry[0].fail(exc)
            elif kind == TELL:
                self.dead_letter(f"{address}/{target}", payload, reason, str(exc))

    def unreachable(self, link: Link) -> PeerUnreachable:
        """The error for a send to ``link`` that cannot happen now."""
        return PeerUnreachable(f"{link.address} is unreachable: {link.reason or 'stopped'}")
