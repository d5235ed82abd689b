"""Bounded mailboxes with a priority lane for the runtime's own messages.

User messages travel as plain tuples ``(kind, message, reply, deadline)``
through a C-implemented ``queue.SimpleQueue`` (measured several times
faster than ``queue.Queue``, which pykka uses by default). The bound is
checked against ``qsize()`` before each put: concurrent senders can overshoot
it by at most one message each, which keeps the hot path free of locks.

System messages (supervision directives, failures of children) go to a
separate deque that the consumer checks before every user message, so
they overtake queued work.

**Room again** (flow control): a thread that is not the consumer learns that
a full mailbox has room with :meth:`Mailbox.on_space`, a one-shot callback
that the consumer runs once the user lane has drained to ``low_water`` (half
the capacity). While nobody waits, the consumer pays one attribute check per
message (``_space is not None``).

Two consumers exist: an actor's own thread (:class:`Mailbox`, blocking
``get``) and the actor system's event loop (:class:`LoopMailbox`, whose
``put`` schedules the actor on the loop when it is idle). An event loop's
mailbox queues a plain tell (no reply, no deadline) as the bare message and
anything else as a :class:`Boxed` envelope: measured, the tuple per tell
was a third of a tell's cost there (its allocation and the collections it
triggers).
"""

from __future__ import annotations

import logging
from _thread import allocate_lock
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from queue import Empty, SimpleQueue
from typing import Any, Final

__all__ = [
    "REMOTE",
    "STOP",
    "TIMER",
    "TRACED",
    "USER",
    "WAKE",
    "WAKE_ENVELOPE",
    "Boxed",
    "Envelope",
    "LoopMailbox",
    "Mailbox",
]

log = logging.getLogger("taskmesh.actors")

USER: Final = 0
STOP: Final = 1
TIMER: Final = 2
WAKE: Final = 3
REMOTE: Final = 4
"""A user message the transport queued for an inline actor (counted)."""
TRACED: Final = 5
"""A user message that came with a trace context: the message slot holds a
:class:`~taskmesh.actors.traced.Traced` (see :mod:`taskmesh.tracing`)."""

Envelope = tuple[int, Any, Any, float | None]
"""``(kind, message, reply_to or None, monotonic deadline or None)``."""

WAKE_ENVELOPE: Final[Envelope] = (WAKE, None, None, None)

_lanes = allocate_lock()
"""Guards the rarely used, lazily made parts of every mailbox (space
waiters, an event loop mailbox's system lane): one lock for all of them
costs no memory per mailbox and is never taken on the message path."""


class Boxed:
    """An envelope in an event loop's mailbox: anything but a plain tell
    (an ask, a deadline, a control message). Private to the runtime, so no
    user message is ever one."""

    __slots__ = ("envelope",)

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope


class _Room:
    """The bound and the space waiters, shared by both kinds of mailbox."""

    __slots__ = ("_space", "capacity", "low_water")

    capacity: int
    low_water: int
    """Depth at or below which space waiters are called (half the capacity)."""
    _space: list[Callable[[], None]] | None

    def qsize(self) -> int:
        raise NotImplementedError

    def full(self) -> bool:
        """Whether the user lane holds ``capacity`` messages or more."""
        return self.qsize() >= self.capacity

    def on_space(self, callback: Callable[[], None]) -> bool:
        """Call ``callback()`` once, when the user lane has drained to
        ``low_water`` messages (any thread registers).

        Returns False, and registers nothing, when the lane already holds
        ``low_water`` messages or fewer: there is room, send now. Otherwise
        the consumer (the actor's thread or the event loop) runs the
        callback after taking the message that brings the depth down to the
        mark, or when the actor stops. It runs on the consumer's thread: it
        must be short and never block (release a lock, set a flag, hand the
        work to another thread).
        """
        with _lanes:
            if self._space is None:
                self._space = [callback]
            else:
                self._space.append(callback)
        if self.qsize() > self.low_water:
            return True
        # It drained meanwhile: take the callback back unless the consumer did.
        with _lanes:
            waiting = self._space
            if waiting is not None:
                for index, registered in enumerate(waiting):
                    if registered is callback:
                        del waiting[index]
                        if not waiting:
                            self._space = None
                        return False
        return True

    def made_room(self) -> None:
        """Call the space waiters if the lane has drained to the mark
        (consumer; only when ``_space`` is set)."""
        if self.qsize() <= self.low_water:
            self._call_waiters()

    def _call_waiters(self) -> None:
        if self._space is None:
            return
        with _lanes:
            callbacks, self._space = self._space, None
        for callback in callbacks or ():
            try:
                callback()
            except Exception:
                log.exception("mailbox space callback %r failed", callback)


class Mailbox(_Room):
    """One actor's inbox: a bounded user lane and an unbounded system lane,
    consumed by the actor's own thread.

    ``put``/``qsize``/``on_space``/``post_system`` are called from any
    thread; ``get``, ``system``, ``wait_system`` and ``made_room`` only from
    the consumer.
    """

    __slots__ = ("_signal", "enqueue", "get", "put", "qsize", "system")

    scheduled: Final = True
    """Its thread always waits on it: a put never needs to schedule anything."""

    def __init__(self, capacity: int) -> None:
        queue: SimpleQueue[Envelope] = SimpleQueue()
        self.capacity = capacity
        self.low_water = capacity // 2
        self._space = None
        self.put: Callable[[Envelope], None] = queue.put
        self.enqueue = self.put
        self.get = queue.get
        self.qsize = queue.qsize  # type: ignore[method-assign]
        self.system: deque[Any] = deque()
        self._signal: SimpleQueue[None] = SimpleQueue()

    def post_system(self, message: Any) -> None:
        """Queue a system message ahead of user work and wake the owner."""
        self.system.append(message)
        self._signal.put(None)
        self.put(WAKE_ENVELOPE)

    def wait_system(self, timeout: float | None) -> None:
        """Block until a system message is posted or ``timeout`` passes."""
        with suppress(Empty):
            self._signal.get(timeout=timeout)

    def drain(self) -> list[Envelope]:
        """Take every queued user envelope (WAKE ones are skipped) and call
        every space waiter: nothing will be consumed any more."""
        taken = _drain(self.get)
        self._call_waiters()
        return taken


class LoopMailbox(_Room):
    """The mailbox of an actor run by the event loop.

    ``put`` queues and, when the actor is idle, schedules it on the loop
    (``wake``); a burst of puts costs one wake-up, because ``scheduled``
    stays set until the consumer finds the lane empty (or while the actor
    is suspended). The system lane is made on first use: most light actors
    never get a system message. ``scheduled`` is set by producers and
    cleared by the consumer on the loop; a rare second wake-up is harmless.

    The queue holds bare messages (plain tells) and :class:`Boxed`
    envelopes (the rest), in the order they were put.
    """

    __slots__ = ("_queue", "_wake", "enqueue", "qsize", "scheduled", "system")

    def __init__(self, capacity: int, wake: Callable[[], None]) -> None:
        self.capacity = capacity
        self.low_water = capacity // 2
        self._space = None
        self._queue: SimpleQueue[Any] = SimpleQueue()
        self.qsize = self._queue.qsize  # type: ignore[method-assign]  # every send reads it
        self.enqueue: Callable[[Any], None] = self._queue.put
        self._wake = wake
        self.scheduled = False
        self.system: deque[Any] | None = None

    def put(self, envelope: Envelope) -> None:
        """Queue a user envelope and schedule the consumer if idle (any thread)."""
        if envelope[0] or envelope[2] is not None or envelope[3] is not None:
            self._queue.put(Boxed(envelope))
        else:
            self._queue.put(envelope[1])
        if not self.scheduled:
            self.scheduled = True
            self._wake()

    def schedule(self) -> None:
        """Wake the consumer after an ``enqueue`` found ``scheduled`` unset
        (any thread). ``enqueue`` + this is ``put`` without a Python call
        for the common case, on the tell path."""
        self.scheduled = True
        self._wake()

    def get(self) -> Envelope:
        """The next user envelope; raises ``queue.Empty`` (the loop)."""
        return unbox(self._queue.get(False))

    def post_system(self, message: Any) -> None:
        """Queue a system message ahead of user work and wake the consumer."""
        system = self.system
        if system is None:
            with _lanes:
                if self.system is None:
                    self.system = deque()
                system = self.system
        system.append(message)
        self.scheduled = True
        self._wake()

    def drain(self) -> list[Envelope]:
        """As :meth:`Mailbox.drain`."""
        taken: list[Envelope] = []
        get = self._queue.get
        while True:
            try:
                taken.append(unbox(get(False)))
            except Empty:
                break
        self._call_waiters()
        return taken


def unbox(item: Any) -> Envelope:
    """The envelope of an item of an event loop's mailbox."""
    if type(item) is Boxed:
        return item.envelope
    return (USER, item, None, None)


def _drain(get: Callable[[bool], Envelope]) -> list[Envelope]:
    taken: list[Envelope] = []
    while True:
        try:
            envelope = get(False)
        except Empty:
            return taken
        if envelope[0] != WAKE:
            taken.append(envelope)
