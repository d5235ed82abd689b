from __future__ import annotations

from typing import Any

import pytest

import taskmesh
from taskmesh.actors import ActorSystem, Child, Supervisor
from tests.unit.actors.support import Both, Journal, Kind, Worker


class Flaky(Both):
    """Fails on "flaky" until it has seen it ``fails`` times (counted across
    restarts in a shared list), always fails on "poison"."""

    def __init__(self, seen: list[Any], fails: int) -> None:
        self.seen = seen
        self.fails = fails

    async def handle(self, message: Any) -> Any:
        self.seen.append(message)
        if message == "poison":
            raise ValueError("poison pill")
        if message == "flaky" and self.seen.count("flaky") <= self.fails:
            raise ConnectionError("transient")
        return message


def test_a_failing_message_is_retried_on_the_fresh_instance(
    system: ActorSystem, kind: Kind
) -> None:
    seen: list[Any] = []
    ref = system.spawn(kind(Flaky), name="f", seen=seen, fails=2, max_attempts=3)
    assert ref.ask("flaky") == "flaky"
    assert seen == ["flaky"] * 3
    assert system.restart_count == 2
    assert system.dead_letters.total == 0


def test_a_poison_message_is_taken_out_after_its_attempts_and_the_actor_carries_on(
    system: ActorSystem, journal: Journal, kind: Kind
) -> None:
    seen: list[Any] = []
    system.spawn(
        Supervisor, name="sup", max_restarts=10,
        children=[Child(kind(Flaky), name="f", kwargs={"seen": seen, "fails": 0}, max_attempts=3)],
    )  # fmt: skip
    ref = system.ref("f")
    pending = ref.ask_async("poison", timeout=30)
    ref.tell("next")
    with pytest.raises(ValueError, match="poison pill"):
        pending.get(30)
    assert ref.ask("after") == "after"
    assert seen == ["poison"] * 3 + ["next", "after"]
    letters = [d for d in system.dead_letters.recent() if d.reason == "poison"]
    assert [(d.recipient, d.message) for d in letters] == [("f", "poison")]
    assert "ValueError: poison pill (failed 3 times)" in letters[0].error


def test_by_default_a_failing_message_is_not_retried(system: ActorSystem, kind: Kind) -> None:
    ref = system.spawn(kind(Worker), name="w")
    with pytest.raises(ValueError):
        ref.ask("boom")
    assert ref.ask("handled") == []
    assert system.restart_count == 1


def test_max_attempts_must_be_positive() -> None:
    with pytest.raises(taskmesh.ConfigError):
        Child(Worker, max_attempts=0)
    with pytest.raises(taskmesh.ConfigError):
        taskmesh.ActorSystem(max_attempts=0)
