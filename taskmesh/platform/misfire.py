"""What the leader does with ticks it could not fire on time.

A tick is **late** when it is fired after its due time, as happens during
a leader failover (a few seconds): a late tick within ``grace`` seconds is
fired as usual, in order, so a failover loses no tick. A tick later than
``grace`` has **misfired** (the cluster had no leader for longer, or was
down): the schedule's policy decides.

- `Skip` (``"skip"``): drop the misfired ticks and go on with the next due
  one. Like cron: a nightly report missed while the cluster was down is not
  made up.
- `RunOnce` (``"run_once"``): fire the misfired ticks as one, as the latest
  of them (its tick id says which), then go on. Like Celery beat after a
  restart, and anacron.

Dropped ticks are never silent: the scheduler records them as ``misfired``
dead letters and counts them in ``taskmesh schedules``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

from taskmesh.errors import ConfigError

from .triggers import Trigger

__all__ = ["POLICIES", "MisfirePolicy", "Plan", "RunOnce", "Skip", "plan", "policy"]


@dataclass(frozen=True, slots=True)
class Plan:
    """The scheduler's next step for one schedule.

    ``fire``: the due time to fire now (None: nothing now). ``dropped``:
    misfired ticks not fired, and ``dropped_until`` the last of them (the
    schedule's state moves past it). ``wake``: when to look again if
    nothing fires now (None: never due again).
    """

    fire: float | None = None
    dropped: int = 0
    dropped_until: float | None = None
    wake: float | None = None


class MisfirePolicy(Protocol):
    name: ClassVar[str]

    def misfired(self, trigger: Trigger, first: float, now: float, grace: float) -> Plan:
        """Ticks from ``first`` to ``now - grace`` misfired; decide."""
        ...


class Skip:
    """Drop misfired ticks; fire the next tick that is not misfired."""

    name: ClassVar[str] = "skip"

    def misfired(self, trigger: Trigger, first: float, now: float, grace: float) -> Plan:
        cutoff = now - grace
        last = trigger.latest_until(cutoff)
        dropped_until = last if last is not None and last >= first else first
        dropped = trigger.count(first, dropped_until)
        return Plan(dropped=dropped, dropped_until=dropped_until)


class RunOnce:
    """Fire the misfired ticks once, as the latest of them."""

    name: ClassVar[str] = "run_once"

    def misfired(self, trigger: Trigger, first: float, now: float, grace: float) -> Plan:
        cutoff = now - grace
        last = trigger.latest_until(cutoff)
        latest = last if last is not None and last >= first else first
        return Plan(fire=latest, dropped=trigger.count(first, latest) - 1)


POLICIES: dict[str, MisfirePolicy] = {p.name: p for p in (Skip(), RunOnce())}


def policy(name: str) -> MisfirePolicy:
    """The policy called ``name``; `ConfigError` for an unknown one."""
    try:
        return POLICIES[name]
    except KeyError:
        raise ConfigError(f"misfire must be one of {sorted(POLICIES)}, got {name!r}") from None


def plan(
    trigger: Trigger,
    policy: MisfirePolicy,
    *,
    last: float | None,
    start: float,
    now: float,
    grace: float,
) -> Plan:
    """What to do now for a schedule whose last handled tick is ``last``
    (None: none yet, counting from ``start``)."""
    due = trigger.next_after(start if last is None else last)
    if due is None:
        return Plan()
    if due > now:
        return Plan(wake=due)
    if now - due <= grace:
        return Plan(fire=due)
    return policy.misfired(trigger, due, now, grace)
