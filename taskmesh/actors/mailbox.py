"""Bounded mailboxes with a priority lane for the runtime's own messages.

User messages travel as plain tuples ``(kind, message, reply, deadline)``
through a C-implemented ``queue.SimpleQueue`` (measured several times
faster than ``queue.Queue``, which pykka uses by default). The bound is
checked against ``qsize()`` before each put: concurrent senders can overshoot
it by at most one message each, which keeps the hot path free of locks.

System messages (supervision directives, failures of children) go to a
separate deque that the actor's thread checks before every user message, so
they overtake queued work; a WAKE envelope unblocks a thread that waits for
user messages.
"""

from __future__ import annotations

from collections import deque
from contextlib import suppress
from queue import Empty, SimpleQueue
from typing import Any, Final

__all__ = ["REMOTE", "STOP", "TIMER", "USER", "WAKE", "WAKE_ENVELOPE", "Envelope", "Mailbox"]

USER: Final = 0
STOP: Final = 1
TIMER: Final = 2
WAKE: Final = 3
REMOTE: Final = 4
"""A user message the transport queued for an inline actor (counted)."""

Envelope = tuple[int, Any, Any, float | None]
"""``(kind, message, reply_to or None, monotonic deadline or None)``."""

WAKE_ENVELOPE: Final[Envelope] = (WAKE, None, None, None)


class Mailbox:
    """One actor's inbox: a bounded user lane and an unbounded system lane.

    ``put``/``qsize`` are called from any thread; ``get``, ``system`` and
    ``wait_system`` only from the owning actor's thread.
    """

    __slots__ = ("_signal", "capacity", "get", "put", "qsize", "system")

    def __init__(self, capacity: int) -> None:
        queue: SimpleQueue[Envelope] = SimpleQueue()
        self.capacity = capacity
        self.put = queue.put
        self.get = queue.get
        self.qsize = queue.qsize
        self.system: deque[Any] = deque()
        self._signal: SimpleQueue[None] = SimpleQueue()

    def full(self) -> bool:
        """Whether the user lane holds ``capacity`` messages or more."""
        return self.qsize() >= self.capacity

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
        """Take every queued user envelope (WAKE ones are skipped)."""
        taken: list[Envelope] = []
        get = self.get
        while True:
            try:
                envelope = get(False)
            except Empty:
                return taken
            if envelope[0] != WAKE:
                taken.append(envelope)
