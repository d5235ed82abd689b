"""Transport counters, read as a plain dict by the metrics endpoint.

Most counters are plain ints written only by the I/O thread (one writer, so
no lock is needed and the hot path pays one addition per batch). Dead
letters can be recorded from any thread, so they take a lock; they are the
rare path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Counters", "RateLimitedLog"]


class Counters:
    """Counts of one transport; :meth:`snapshot` is safe from any thread."""

    __slots__ = (
        "_dead",
        "_lock",
        "bytes_in",
        "bytes_out",
        "frames_in",
        "frames_out",
        "malformed_frames",
        "messages_in",
        "messages_out",
        "peers_down",
        "suspect_events",
        "suspect_peers",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dead: dict[str, int] = {}
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.frames_in = 0
        self.frames_out = 0
        self.malformed_frames = 0
        self.suspect_peers = 0
        self.suspect_events = 0
        self.peers_down = 0

    def dead_letter(self, reason: str, n: int = 1) -> None:
        """Count ``n`` dead letters for ``reason``; any thread."""
        with self._lock:
            self._dead[reason] = self._dead.get(reason, 0) + n

    def snapshot(self) -> dict[str, Any]:
        """A copy of every counter as plain ints (dead letters by reason)."""
        with self._lock:
            dead = dict(self._dead)
        return {
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "malformed_frames": self.malformed_frames,
            "dead_letters": dead,
            "dead_letters_total": sum(dead.values()),
            "suspect_peers": self.suspect_peers,
            "suspect_events": self.suspect_events,
            "peers_down": self.peers_down,
        }


class RateLimitedLog:
    """Log one line per ``key`` at most every ``interval`` seconds.

    Lines skipped in between are counted and reported with the next line,
    so a flood of bad input costs a dict lookup per event, not a log call.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._next: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def warning(self, key: str, msg: str, *args: object) -> None:
        """Log ``msg % args`` unless ``key`` was logged within the interval."""
        now = self._clock()
        if now < self._next.get(key, 0.0):
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return
        self._next[key] = now + self._interval
        skipped = self._skipped.pop(key, 0)
        if skipped:
            self._logger.warning(msg + " (%d more since last report)", *args, skipped)
        else:
            self._logger.warning(msg, *args)
