"""When a schedule is due: every N seconds, or at the times a cron expression names.

A trigger maps wall-clock time (seconds since the epoch, as ``time.time``)
to due times. A due time is also the tick's identity: the tick
``2025-01-01T02:00:00.000Z`` of ``nightly`` is the same tick on whichever
node computes it, which is what lets a new leader finish the tick an old
one started (see `taskmesh.platform.scheduler`).

Cron expressions are evaluated by ``cronsim`` (Debian cron's rules and DST
handling, plus an optional sixth field for seconds), in the schedule's time
zone; we do not parse cron ourselves.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from taskmesh.errors import ConfigError

__all__ = ["COUNT_CAP", "Cron", "Interval", "Trigger", "tick_id"]

MIN_INTERVAL = 1.0
"""Shortest interval, seconds: every tick is an etcd transaction on the
leader. Faster periodic work belongs in an actor's own timers."""

COUNT_CAP = 100_000
"""`Trigger.count` stops counting here (a per-second cron down for a week)."""


def tick_id(due: float) -> str:
    """A due time as the tick's identity: UTC, ISO 8601, milliseconds."""
    moment = datetime.fromtimestamp(round(due, 3), UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Trigger(Protocol):
    """Due times of one schedule (pure: no clock, no I/O)."""

    def next_after(self, t: float) -> float | None:
        """The first due time strictly after ``t``; None if there is none."""
        ...

    def latest_until(self, t: float) -> float | None:
        """The last due time at or before ``t`` (after the trigger's start)."""
        ...

    def count(self, start: float, end: float) -> int:
        """How many due times lie in ``[start, end]`` (capped at `COUNT_CAP`)."""
        ...

    def describe(self) -> str: ...


class Interval:
    """Due every ``every`` seconds after ``anchor`` (the schedule's ``start``).

    Computed in whole milliseconds, so due times never drift.
    """

    def __init__(self, every: float, anchor: float) -> None:
        if not isinstance(every, int | float) or not math.isfinite(every):
            raise ConfigError(f"every must be a number of seconds, got {every!r}")
        if every < MIN_INTERVAL:
            raise ConfigError(
                f"every must be at least {MIN_INTERVAL:g} s, got {every!r} (each tick is an "
                "etcd transaction; use an actor's timers for faster periodic work)"
            )
        self.every = float(every)
        self._step = round(every * 1000)
        self._anchor = round(anchor * 1000)

    def _index_until(self, t: float) -> int:
        return (round(t * 1000) - self._anchor) // self._step

    def next_after(self, t: float) -> float | None:
        k = max(self._index_until(t) + 1, 1)
        return (self._anchor + k * self._step) / 1000

    def latest_until(self, t: float) -> float | None:
        k = self._index_until(t)
        return None if k < 1 else (self._anchor + k * self._step) / 1000

    def count(self, start: float, end: float) -> int:
        first = self.next_after(start - 0.001)
        if first is None or first > end:
            return 0
        return min(self._index_until(end) - self._index_until(first) + 1, COUNT_CAP)

    def describe(self) -> str:
        return f"every {self.every:g}s"


class Cron:
    """Due at the times ``expression`` names, in ``timezone`` (IANA name)."""

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        try:
            self.zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"unknown time zone {timezone!r} (an IANA name, e.g. 'UTC')"
            ) from None
        self.timezone = timezone
        try:
            CronSim(expression, datetime.now(self.zone))
        except CronSimError as error:
            raise ConfigError(f"cron expression {expression!r} is not valid: {error}") from None
        self.expression = expression

    def _at(self, t: float) -> datetime:
        return datetime.fromtimestamp(t, self.zone)

    def next_after(self, t: float) -> float | None:
        try:
            return next(CronSim(self.expression, self._at(t))).timestamp()
        except StopIteration:  # nothing in the next 50 years
            return None

    def latest_until(self, t: float) -> float | None:
        moment = self._at(t)
        if moment.microsecond == 0:  # cronsim's reverse walk starts strictly before
            moment += timedelta(microseconds=1)
        try:
            return next(CronSim(self.expression, moment, reverse=True)).timestamp()
        except StopIteration:
            return None

    def count(self, start: float, end: float) -> int:
        seen = 0
        for due in CronSim(self.expression, self._at(start - 0.001)):
            if due.timestamp() > end or seen >= COUNT_CAP:
                break
            seen += 1
        return seen

    def describe(self) -> str:
        zone = "" if self.timezone == "UTC" else f" ({self.timezone})"
        return f"cron {self.expression}{zone}"
