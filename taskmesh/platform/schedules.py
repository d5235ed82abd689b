"""Schedules: what to send, to whom, and when; stored in etcd.

A schedule is declared once (``node.schedule(...)`` or ``taskmesh schedule
add``) and lives at ``schedules/<name>`` with no lease: it outlives every
node. Declaring the same schedule again from every node's ``--app`` code is
a no-op, so nodes can all declare what the cluster should run; a declaration
that differs replaces the old one (its last tick is kept).

Its progress lives at ``schedule-state/<name>``, written only by the leader
under its fencing token (see `taskmesh.platform.scheduler`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from taskmesh.actors.names import validate_capability, validate_name
from taskmesh.cluster.etcd import Compare, Delete, EtcdClient, Put
from taskmesh.errors import ConfigError

from .misfire import MisfirePolicy, plan, policy
from .records import PlatformKeys, decode, encode
from .triggers import Cron, Interval, Trigger, tick_id

__all__ = ["Schedule", "ScheduleInfo", "ScheduleStore"]


@dataclass(frozen=True)
class Schedule:
    """One schedule's definition.

    - ``name``: unique in the cluster; ``to``: the actor asked, or a
      capability with ``capability=True`` (then routed by
      ``consistent_hash`` on the tick's key); ``message``: a msgpack value.
    - ``cron``: five fields (or six, seconds first), in ``timezone``; or
      ``every``: seconds (at least 1), from ``start`` (default: when first
      stored), so ticks fall at ``start + k * every``.
    - ``misfire``: ``"skip"`` or ``"run_once"``, for ticks later than
      ``misfire_grace`` seconds (see `taskmesh.platform.misfire`).
    - ``timeout``, ``retries``: of each delivery (an ask whose idempotency
      key is ``<name>:<tick>``).
    - ``with_tick``: deliver ``{"schedule", "tick", "message"}`` so the
      receiver knows which tick it handles (say, a daily report's date).
    """

    name: str
    to: str
    message: Any = None
    cron: str | None = None
    every: float | None = None
    capability: bool = False
    misfire: str = "skip"
    misfire_grace: float = 60.0
    timezone: str = "UTC"
    timeout: float = 30.0
    retries: int = 3
    with_tick: bool = False
    start: float | None = None

    def __post_init__(self) -> None:
        validate_name(self.name, what="schedule name")
        (validate_capability if self.capability else validate_name)(self.to)
        if (self.cron is None) == (self.every is None):
            raise ConfigError("a schedule needs exactly one of cron= and every=")
        policy(self.misfire)
        if not self.misfire_grace >= 0.1:
            raise ConfigError(f"misfire_grace must be >= 0.1 s, got {self.misfire_grace!r}")
        if not self.timeout > 0:
            raise ConfigError(f"timeout must be > 0 s, got {self.timeout!r}")
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigError(f"retries must be an int >= 0, got {self.retries!r}")
        self.trigger()  # validates cron, time zone and interval
        encode({"message": self.message}, what=f"the message of schedule {self.name!r}")

    def trigger(self) -> Trigger:
        if self.cron is not None:
            return Cron(self.cron, self.timezone)
        assert self.every is not None
        return Interval(self.every, self.start or 0.0)

    def policy(self) -> MisfirePolicy:
        return policy(self.misfire)

    def payload(self, due: float) -> Any:
        """The message delivered for the tick due at ``due``."""
        if not self.with_tick:
            return self.message
        return {"schedule": self.name, "tick": tick_id(due), "message": self.message}

    def to_record(self) -> dict[str, Any]:
        return {
            "to": self.to,
            "message": self.message,
            "cron": self.cron,
            "every": self.every,
            "capability": self.capability,
            "misfire": self.misfire,
            "misfire_grace": self.misfire_grace,
            "timezone": self.timezone,
            "timeout": self.timeout,
            "retries": self.retries,
            "with_tick": self.with_tick,
            "start": self.start,
        }

    @classmethod
    def from_record(cls, name: str, record: dict[str, Any]) -> Schedule:
        """A stored definition; raises `ConfigError` if it is not valid."""
        try:
            return cls(name=name, **record)
        except TypeError as error:
            raise ConfigError(f"stored schedule {name!r} is not readable: {error}") from None


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A schedule and its progress, as ``taskmesh schedules`` shows it.

    ``last_tick`` is the last tick handled and ``last_status`` how it went:
    ``sending`` (fired; delivery not yet confirmed), ``delivered``,
    ``failed`` (``last_error`` says why), ``skipped`` (misfired and
    dropped). ``dropped`` counts misfired ticks that were not fired.
    Times are seconds since the epoch.
    """

    schedule: Schedule
    trigger: str
    next_due: float | None
    last_tick: str | None
    last_status: str | None
    last_error: str | None
    fired_at: float | None
    dropped: int
    delivered: int

    def to_json(self) -> dict[str, Any]:
        s = self.schedule
        return {
            "name": s.name,
            "trigger": self.trigger,
            "to": s.to,
            "capability": s.capability,
            "misfire": s.misfire,
            "next_due": tick_id(self.next_due) if self.next_due is not None else None,
            "last_tick": self.last_tick,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "delivered": self.delivered,
            "dropped": self.dropped,
        }


class ScheduleStore:
    """Reads and writes schedule definitions and states (any thread)."""

    def __init__(self, client: EtcdClient, keys: PlatformKeys) -> None:
        self._client = client
        self._keys = keys

    def put(self, schedule: Schedule) -> Schedule:
        """Store ``schedule``; an identical one already stored is kept as it
        is. Without ``start``, an interval is anchored when first stored, and a
        re-declaration keeps that anchor."""
        key = self._keys.schedule(schedule.name)
        for _ in range(10):
            held = self._client.get(key)
            if held is not None:
                try:
                    current = Schedule.from_record(schedule.name, decode(held.value))
                except ConfigError:
                    current = None
                if current is not None and current == replace(
                    schedule, start=schedule.start if schedule.start is not None else current.start
                ):
                    return current
            fresh = replace(
                schedule, start=time.time() if schedule.start is None else schedule.start
            )
            value = encode(fresh.to_record(), what=f"schedule {schedule.name!r}")
            expected = held.mod_revision if held is not None else 0
            if self._client.txn([Compare(key, "mod", "==", expected)], [Put(key, value)]).succeeded:
                return fresh
        raise ConfigError(f"schedule {schedule.name!r} kept changing while being stored")

    def remove(self, name: str) -> bool:
        """Delete the schedule and its state; True if it existed."""
        validate_name(name, what="schedule name")
        key = self._keys.schedule(name)
        result = self._client.txn(
            [Compare(key, "create", ">", 0)],
            [Delete(key), Delete(self._keys.schedule_state(name))],
        )
        return result.succeeded

    def definitions(self) -> dict[str, Schedule]:
        """Every readable stored schedule by name."""
        kvs, _ = self._client.get_prefix(self._keys.schedules)
        found = {}
        for kv in kvs:
            name = PlatformKeys.tail(self._keys.schedules, kv.key)
            try:
                found[name] = Schedule.from_record(name, decode(kv.value))
            except ConfigError:
                continue
        return found

    def infos(self, *, now: float | None = None) -> list[ScheduleInfo]:
        """Every schedule with its progress, sorted by name."""
        now = time.time() if now is None else now
        states = {
            PlatformKeys.tail(self._keys.schedule_states, kv.key): decode(kv.value)
            for kv in self._client.get_prefix(self._keys.schedule_states)[0]
        }
        infos = []
        for name, schedule in sorted(self.definitions().items()):
            state = states.get(name, {})
            trigger = schedule.trigger()
            step = plan(
                trigger, schedule.policy(), last=state.get("due"), start=schedule.start or 0.0,
                now=now, grace=schedule.misfire_grace,
            )  # fmt: skip
            upcoming = step.fire if step.fire is not None else step.wake
            infos.append(
                ScheduleInfo(
                    schedule=schedule,
                    trigger=trigger.describe(),
                    next_due=upcoming,
                    last_tick=state.get("tick"),
                    last_status=state.get("status"),
                    last_error=state.get("error"),
                    fired_at=state.get("fired_at"),
                    dropped=int(state.get("dropped", 0)),
                    delivered=int(state.get("delivered", 0)),
                )
            )
        return infos
