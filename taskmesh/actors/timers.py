"""Timers: an actor schedules messages to itself, once or periodically.

One scheduler thread per actor system keeps a heap of due times and drops
fired messages into the actors' mailboxes. A timer carries a token; the
actor's thread only handles a fired message whose token is still the
current one for its key, so a message of a cancelled or replaced timer is
never received, even if it was already queued. Timers are cancelled when
their actor stops or restarts.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from taskmesh.actors.mailbox import TIMER
from taskmesh.errors import ConfigError

if TYPE_CHECKING:
    from taskmesh.actors.cell import Cell

__all__ = ["Scheduler", "Timers"]

log = logging.getLogger("taskmesh.actors")


@dataclass(eq=False, slots=True)
class _Timer:
    cell: Cell
    key: Any
    message: Any
    interval: float | None
    cancelled: bool = field(default=False)


class Scheduler:
    """The timer thread of one actor system (started on first use)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def schedule(self, when: float, timer: _Timer) -> None:
        """Fire ``timer`` at monotonic time ``when`` (any thread)."""
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._heap, (when, next(self._seq), timer))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="taskmesh:timers", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def stop(self) -> None:
        """Stop the thread; pending timers are dropped (any thread)."""
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)

    def _run(self) -> None:
        """The scheduler thread's loop."""
        cond = self._cond
        heap = self._heap
        while True:
            with cond:
                while not self._stopped and (not heap or heap[0][0] > time.monotonic()):
                    cond.wait(None if not heap else heap[0][0] - time.monotonic())
                if self._stopped:
                    return
                when, _, timer = heapq.heappop(heap)
                if timer.cancelled:
                    continue
                if timer.interval is not None:
                    # fixed rate, but never catch up with a burst after a stall
                    due = max(when + timer.interval, time.monotonic())
                    heapq.heappush(heap, (due, next(self._seq), timer))
            self._fire(timer)

    @staticmethod
    def _fire(timer: _Timer) -> None:
        cell = timer.cell
        if not cell.alive:
            timer.cancelled = True
            return
        mailbox = cell.mailbox
        if mailbox.full():
            cell.system.dead_letters.record(cell.name, timer.message, "mailbox_full", "timer")
            return
        mailbox.put((TIMER, (timer.key, timer, timer.message), None, None))


class Timers:
    """The timers of one actor. Methods run in the actor's own thread."""

    def __init__(self, cell: Cell) -> None:
        self._cell = cell
        self._active: dict[Any, _Timer] = {}

    def start_single(self, key: Any, message: Any, delay: float) -> None:
        """Send ``message`` to this actor once, ``delay`` seconds from now.
        A timer with the same key is replaced."""
        self._start(key, message, delay, None)

    def start_periodic(
        self, key: Any, message: Any, interval: float, *, initial_delay: float | None = None
    ) -> None:
        """Send ``message`` to this actor every ``interval`` seconds (first
        after ``initial_delay``, default ``interval``). Replaces ``key``."""
        if interval <= 0:
            raise ConfigError(f"timer interval must be > 0, got {interval!r}")
        self._start(key, message, interval if initial_delay is None else initial_delay, interval)

    def _start(self, key: Any, message: Any, delay: float, interval: float | None) -> None:
        if delay < 0:
            raise ConfigError(f"timer delay must be >= 0, got {delay!r}")
        self.cancel(key)
        timer = _Timer(self._cell, key, message, interval)
        self._active[key] = timer
        self._cell.system.scheduler.schedule(time.monotonic() + delay, timer)

    def cancel(self, key: Any) -> bool:
        """Cancel the timer ``key``; returns whether one was active."""
        timer = self._active.pop(key, None)
        if timer is None:
            return False
        timer.cancelled = True
        return True

    def cancel_all(self) -> None:
        """Cancel every timer of this actor."""
        for timer in self._active.values():
            timer.cancelled = True
        self._active.clear()

    def is_active(self, key: Any) -> bool:
        """Whether a timer with ``key`` is scheduled."""
        return key in self._active

    def _claim(self, key: Any, token: _Timer) -> bool:
        """Whether a fired message is still wanted (actor's thread)."""
        timer = self._active.get(key)
        if timer is not token:
            return False
        if timer.interval is None:
            del self._active[key]
        return True
