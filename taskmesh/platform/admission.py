"""Tickets and grants: how a sender waits for a limit's token or slot.

A sender asks a gate (a rate's `RateGate`, a concurrency `SlotGate`) for a
`Grant`. When one is free the gate returns it at once; otherwise it queues
a `Ticket` (first come, first served) and later calls the ticket's
callback with a grant, or with ``None`` once the ticket's deadline has
passed. Callbacks run on the limiter's thread (or on the thread that
freed a slot) outside every lock: they must be short and never block.

The gates' state is guarded by their limiter's one lock (``gate.lock``).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .limiter import Limiter

__all__ = ["TOKEN", "Callback", "Fired", "Grant", "QueueGate", "Releases", "Ticket", "run"]

log = logging.getLogger("taskmesh.limits")


class Releases(Protocol):
    """What a grant gives its slot back to."""

    def release(self, grant: Grant) -> None: ...


class Grant:
    """Leave to send one message: a rate's token (nothing to give back) or
    a concurrency slot, freed by :meth:`release` when the ask is answered."""

    __slots__ = ("_gate", "released")

    def __init__(self, gate: Releases | None) -> None:
        self._gate = gate
        self.released = False

    def release(self) -> None:
        """Give the slot back (any thread; a second call does nothing)."""
        if self._gate is not None and not self.released:
            self._gate.release(self)


TOKEN = Grant(None)
"""The grant of a rate's token, or of a gate that no longer limits."""

Callback = Callable[[Grant | None], None]
Fired = list[tuple[Callback, Grant | None]]
"""Callbacks collected under the lock, to run once it is released."""


class Ticket:
    """One sender waiting: its deadline (monotonic) and its callback."""

    __slots__ = ("callback", "deadline")

    def __init__(self, deadline: float, callback: Callback) -> None:
        self.deadline = deadline
        self.callback = callback


class QueueGate:
    """The part rate and slot gates share: a FIFO of tickets, expired at
    their deadlines by the limiter's thread."""

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter
        self.lock = limiter.lock
        self.tickets: deque[Ticket] = deque()

    def _queue(self, deadline: float, callback: Callback) -> None:
        """Queue a ticket and wake the limiter's thread (lock held)."""
        self.tickets.append(Ticket(deadline, callback))
        self.limiter.activate(self)

    def _expire(self, now: float, fired: Fired) -> float:
        """Fail the tickets past their deadline; return the next deadline
        (lock held)."""
        tickets = self.tickets
        if not tickets:
            return math.inf
        if all(t.deadline > now for t in tickets):
            return min(t.deadline for t in tickets)
        kept = deque(t for t in tickets if t.deadline > now)
        fired.extend((t.callback, None) for t in tickets if t.deadline <= now)
        self.tickets = kept
        return min((t.deadline for t in kept), default=math.inf)

    def open_all(self, fired: Fired) -> None:
        """The limit is gone: let every waiting sender through (lock held)."""
        fired.extend((t.callback, TOKEN) for t in self.tickets)
        self.tickets.clear()

    def service(self, now: float) -> float | None:
        """The limiter's thread: do what is due; return when to come back,
        or None once there is nothing to do (the gate then leaves the
        limiter's active set, under the lock)."""
        raise NotImplementedError


def run(fired: Fired) -> None:
    """Run collected callbacks (no lock held); one that raises is logged."""
    for callback, grant in fired:
        try:
            callback(grant)
        except Exception:
            log.exception("a limit's callback failed")
