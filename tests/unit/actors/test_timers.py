from __future__ import annotations

from typing import Any

import pytest

import taskmesh
from taskmesh.actors import ActorSystem
from tests.unit.actors.support import Both, Kind
from tests.waiting import wait_until


class Ticker(Both):
    def __init__(self) -> None:
        self.ticks: list[Any] = []

    async def handle(self, message: Any) -> Any:
        op = message[0] if isinstance(message, tuple) else message
        if op == "single":
            self.timers.start_single(message[1], message[2], message[3])
        elif op == "periodic":
            self.timers.start_periodic(message[1], message[2], message[3])
        elif op == "cancel":
            return self.timers.cancel(message[1])
        elif op == "active":
            return self.timers.is_active(message[1])
        elif op == "ticks":
            return list(self.ticks)
        elif op == "boom":
            raise ValueError("boom")
        else:
            self.ticks.append(message)
        return None


def ticks(ref: taskmesh.ActorRef) -> list[Any]:
    return ref.ask(("ticks",))  # type: ignore[no-any-return]


def test_a_single_timer_fires_once(system: ActorSystem, kind: Kind) -> None:
    ref = system.spawn(kind(Ticker), name="t")
    ref.ask(("single", "k", "tick", 0.01))
    wait_until(lambda: ticks(ref) == ["tick"])
    assert ref.ask(("active", "k")) is False
    ref.ask(("single", "k2", "tock", 0.01))
    wait_until(lambda: ticks(ref) == ["tick", "tock"])


def test_a_periodic_timer_fires_repeatedly_until_cancelled(system: ActorSystem, kind: Kind) -> None:
    ref = system.spawn(kind(Ticker), name="t")
    ref.ask(("periodic", "k", "tick", 0.01))
    wait_until(lambda: len(ticks(ref)) >= 3)
    assert ref.ask(("cancel", "k")) is True
    after_cancel = len(ticks(ref))
    # a probe timer fired later than several periods shows no more ticks came
    ref.ask(("single", "probe", "probe", 0.2))
    wait_until(lambda: "probe" in ticks(ref))
    assert ticks(ref)[:-1] == ["tick"] * after_cancel


def test_replacing_a_timer_drops_the_old_ones_messages(system: ActorSystem, kind: Kind) -> None:
    ref = system.spawn(kind(Ticker), name="t")
    ref.ask(("single", "k", "old", 0.05))
    ref.ask(("single", "k", "new", 0.1))
    ref.ask(("single", "probe", "probe", 0.3))
    wait_until(lambda: "probe" in ticks(ref))
    assert ticks(ref) == ["new", "probe"]


def test_timers_are_cancelled_on_restart_and_on_stop(system: ActorSystem, kind: Kind) -> None:
    ref = system.spawn(kind(Ticker), name="t")
    ref.ask(("periodic", "k", "tick", 0.01))
    wait_until(lambda: len(ticks(ref)) >= 1)
    with pytest.raises(ValueError):
        ref.ask(("boom",))
    assert ref.ask(("active", "k")) is False
    ref.ask(("single", "probe", "probe", 0.2))
    wait_until(lambda: "probe" in ticks(ref))
    assert ticks(ref) == ["probe"], "the fresh instance got no tick of the old timer"
    ref.ask(("periodic", "k", "tick", 0.01))
    assert ref.stop() is True
    with system.scheduler._cond:
        pending = [timer for _, _, timer in system.scheduler._heap]
    assert pending and all(timer.cancelled for timer in pending)


def test_bad_timer_settings_are_refused(system: ActorSystem, kind: Kind) -> None:
    ref = system.spawn(kind(Ticker), name="t")
    with pytest.raises(taskmesh.ConfigError):
        ref.ask(("periodic", "k", "tick", 0))
    with pytest.raises(taskmesh.ConfigError):
        ref.ask(("single", "k", "tick", -1))
