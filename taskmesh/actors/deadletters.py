"""Dead letters: every message that was not delivered, counted and observable.

Nothing is dropped silently: an undeliverable message (unknown name, stopped
actor, full mailbox, expired deadline, unreachable peer, oversized, ...) is
recorded here with a reason. Counters are kept per reason, the most recent
letters are kept in a ring, subscribers are called, and a log line is
written at a limited rate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["DeadLetter", "DeadLetters"]

log = logging.getLogger("taskmesh.deadletters")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One undelivered message.

    ``reason`` is a short stable token (``actor_not_found``,
    ``actor_stopped``, ``mailbox_full``, ``expired``, ``unhandled``,
    ``poison``, ``peer_unreachable``, ...); ``error`` carries details.
    """

    recipient: str
    message: Any
    reason: str
    error: str = ""
    at: float = 0.0


Subscriber = Callable[[DeadLetter], None]


class DeadLetters:
    """Counts and publishes dead letters; safe to use from any thread.

    Subscribers run in the thread that recorded the letter (an actor's, the
    transport's I/O thread, or a sender's): keep them short and never block.
    """

    def __init__(self, *, keep: int = 100, log_interval: float = 5.0) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._recent: deque[DeadLetter] = deque(maxlen=keep)
        self._subscribers: list[Subscriber] = []
        self._log_interval = log_interval
        self._last_log: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def record(self, recipient: str, message: Any, reason: str, error: str = "") -> None:
        """Record one dead letter."""
        letter = DeadLetter(recipient, message, reason, error, time.time())
        now = time.monotonic()
        with self._lock:
            self._counts[reason] = self._counts.get(reason, 0) + 1
            self._recent.append(letter)
            subscribers = list(self._subscribers) if self._subscribers else ()
            last = self._last_log.get(reason)
            if last is None or now - last >= self._log_interval:
                self._last_log[reason] = now
                suppressed = self._unlogged.pop(reason, 0)
                write = True
            else:
                self._unlogged[reason] = self._unlogged.get(reason, 0) + 1
                write = False
        if write:
            more = f" (+{suppressed} more since the last report)" if suppressed else ""
            log.warning(
                "dead letter to %r: %s%s%s", recipient, reason, f" ({error})" if error else "", more
            )
        for subscriber in subscribers:
            try:
                subscriber(letter)
            except Exception:
                log.exception("dead-letter subscriber %r failed", subscriber)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber(letter)`` for every future dead letter.

        Returns a function that unsubscribes.
        """
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return unsubscribe

    def counts(self) -> dict[str, int]:
        """A snapshot of the counters by reason."""
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        """How many dead letters were recorded in all."""
        with self._lock:
            return sum(self._counts.values())

    def recent(self) -> list[DeadLetter]:
        """The most recent dead letters, oldest first."""
        with self._lock:
            return list(self._recent)
