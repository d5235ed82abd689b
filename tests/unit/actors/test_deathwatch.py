from __future__ import annotations

from typing import Any

import pytest

from taskmesh.actors import ActorRef, ActorSystem, Child, Supervisor, Terminated
from tests.unit.actors.support import Both, Gate, Kind, Worker
from tests.waiting import wait_until


class Watcher(Both):
    def __init__(self, gate: Gate | None = None) -> None:
        self.seen: list[Terminated] = []
        self.gate = gate

    async def handle(self, message: Any) -> Any:
        if isinstance(message, Terminated):
            self.seen.append(message)
        elif message == "wait":
            assert self.gate is not None
            await self.gate.wait()
        elif message[0] == "watch":
            self.watch(self.system.ref(message[1]) if message[1] != "gone" else message[2])
        elif message[0] == "unwatch":
            self.unwatch(self.system.ref(message[1]))
        elif message == ("seen",):
            return [(t.name, t.reason) for t in self.seen]
        return None


def seen(watcher: ActorRef) -> list[tuple[str, str]]:
    return watcher.ask(("seen",))  # type: ignore[no-any-return]


def test_a_watcher_receives_terminated_when_the_watched_actor_stops(
    system: ActorSystem, kind: Kind
) -> None:
    target = system.spawn(kind(Worker), name="target")
    watcher = system.spawn(kind(Watcher), name="watcher")
    watcher.ask(("watch", "target"))
    target.stop()
    wait_until(lambda: seen(watcher) == [("target", "stopped")])


def test_a_restart_is_not_a_termination(system: ActorSystem, kind: Kind) -> None:
    target = system.spawn(kind(Worker), name="target")
    watcher = system.spawn(kind(Watcher), name="watcher")
    watcher.ask(("watch", "target"))
    with pytest.raises(ValueError):
        target.ask("boom")
    assert target.ask("ping") == "ping"
    target.stop()
    wait_until(lambda: seen(watcher) == [("target", "stopped")])


def test_a_child_stopped_by_its_supervisor_after_a_failure_terminates_as_failed(
    system: ActorSystem, kind: Kind
) -> None:
    system.spawn(
        Supervisor,
        name="sup",
        decider={ValueError: "stop"},
        children=[Child(kind(Worker), name="target")],
    )
    watcher = system.spawn(kind(Watcher), name="watcher")
    watcher.ask(("watch", "target"))
    with pytest.raises(ValueError):
        system.ref("target").ask("boom")
    wait_until(lambda: seen(watcher) == [("target", "failed")])


def test_watching_an_actor_that_is_already_gone_delivers_terminated_at_once(
    system: ActorSystem, kind: Kind
) -> None:
    target = system.spawn(kind(Worker), name="target")
    target.stop()
    watcher = system.spawn(kind(Watcher), name="watcher")
    watcher.ask(("watch", "gone", target))
    wait_until(lambda: seen(watcher) == [("target", "not_found")])


def test_unwatch_stops_the_notification(system: ActorSystem, kind: Kind) -> None:
    target = system.spawn(kind(Worker), name="target")
    other = system.spawn(kind(Worker), name="other")
    watcher = system.spawn(kind(Watcher), name="watcher")
    watcher.ask(("watch", "target"))
    watcher.ask(("watch", "other"))
    watcher.ask(("unwatch", "target"))
    target.stop()
    other.stop()
    wait_until(lambda: seen(watcher) == [("other", "stopped")])


def test_terminated_reaches_a_watcher_even_with_a_full_mailbox(
    system: ActorSystem, kind: Kind
) -> None:
    gate = Gate()
    target = system.spawn(kind(Worker), name="target")
    watcher = system.spawn(kind(Watcher), name="watcher", gate=gate, mailbox_size=1)
    watcher.ask(("watch", "target"))
    watcher.tell("wait")
    wait_until(lambda: system.mailbox_depths()["watcher"] == 0)
    watcher.tell(("seen",))  # fills the mailbox
    target.stop()
    wait_until(lambda: system.mailbox_depths()["watcher"] == 2, message="Terminated queued")
    gate.set()
    wait_until(lambda: seen(watcher) == [("target", "stopped")])
