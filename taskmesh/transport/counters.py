"""Transport counters, read as a plain dict by the metrics endpoint.

Each socket keeps its own :class:`Tally`, written only by whoever holds
that socket's lock (the I/O thread, a sync asker, or an actor sending its
reply), so the hot path pays a few additions and no lock of its own.
:meth:`Counters.snapshot` sums them when someone asks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["Counters", "RateLimitedLog", "Tally"]


class Tally:
    """Frames, bytes and messages through one socket."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "frames_in",
        "frames_out",
        "malformed",
        "messages_in",
        "messages_out",
    )

    def __init__(self) -> None:
        self.frames_in = 0
        self.bytes_in = 0
        self.messages_in = 0
        self.frames_out = 0
        self.bytes_out = 0
        self.messages_out = 0
        self.malformed = 0


class Counters:
    """The transport-wide counters, written by the I/O thread only, and the
    sum of the sockets' tallies (:meth:`snapshot`, any thread)."""

    __slots__ = ("peers_down", "suspect_events", "suspect_peers")

    def __init__(self) -> None:
        self.suspect_peers = 0
        self.suspect_events = 0
        self.peers_down = 0

    def snapshot(self, tallies: Iterable[Tally]) -> dict[str, Any]:
        """Every counter as a plain int, the tallies summed."""
        total = Tally()
        for tally in tallies:
            for field in Tally.__slots__:
                setattr(total, field, getattr(total, field) + getattr(tally, field))
        return {
            "messages_in": total.messages_in,
            "messages_out": total.messages_out,
            "bytes_in": total.bytes_in,
            "bytes_out": total.bytes_out,
            "frames_in": total.frames_in,
            "frames_out": total.frames_out,
            "malformed_frames": total.malformed,
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
