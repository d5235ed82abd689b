from __future__ import annotations

from typing import Any

import pytest

import taskmesh
from taskmesh.actors import ActorSystem
from tests.unit.actors.support import Both, Gate, Kind, Worker
from tests.waiting import wait_until


def test_ask_returns_what_receive_returned(system: ActorSystem, kind: Kind) -> None:
    ref = system.spawn(kind(Worker), name="w")
    assert ref.ask({"n": 1}) == {"n": 1}


def test_tells_arrive_in_order(system: ActorSystem, kind: Kind) -> None:
    ref = system.spawn(kind(Worker), name="w")
    for i in range(1000):
        ref.tell(i)
    assert ref.ask("handled") == list(range(1000))


def test_tells_and_asks_of_one_sender_keep_their_order_and_their_messages(
    system: ActorSystem, kind: Kind
) -> None:
    # An event loop's mailbox queues a plain tell bare and boxes the rest:
    # messages shaped like its envelopes must come out as they went in.
    ref = system.spawn(kind(Worker), name="w")
    odd = [None, (1, "x", None, None), (0, "y", None, 5.0), [], 0, ("a",)]
    replies = []
    for i, message in enumerate(odd):
        ref.tell(message)
        replies.append(ref.ask_async(("asked", i), timeout=30))
    assert [reply.get(30) for reply in replies] == [("asked", i) for i in range(len(odd))]
    expected = [m for i, message in enumerate(odd) for m in (message, ("asked", i))]
    assert ref.ask("handled") == expected


def test_the_actors_own_exception_is_raised_to_the_asker(system: ActorSystem, kind: Kind) -> None:
    ref = system.spawn(kind(Worker), name="w")
    with pytest.raises(ValueError, match="boom"):
        ref.ask("boom")


def test_ask_times_out_with_ask_timeout(system: ActorSystem, kind: Kind) -> None:
    gate = Gate()
    ref = system.spawn(kind(Worker), name="w", gate=gate)
    try:
        with pytest.raises(taskmesh.AskTimeout):
            ref.ask("wait", timeout=0.1)
    finally:
        gate.set()


def test_an_ask_whose_deadline_passed_in_the_mailbox_is_not_executed(
    system: ActorSystem, kind: Kind
) -> None:
    gate = Gate()
    ref = system.spawn(kind(Worker), name="w", gate=gate)
    ref.tell("wait")
    with pytest.raises(taskmesh.AskTimeout):
        ref.ask("late", timeout=0.05)
    gate.set()
    assert "late" not in ref.ask("handled")
    assert system.dead_letters.counts().get("expired") == 1


def test_ref_to_unknown_name_raises_actor_not_found(system: ActorSystem) -> None:
    with pytest.raises(taskmesh.ActorNotFound):
        system.ref("nobody")
    assert system.local("nobody") is None


def test_ask_to_a_stopped_actor_raises_actor_not_found(system: ActorSystem, kind: Kind) -> None:
    ref = system.spawn(kind(Worker), name="w")
    assert ref.stop() is True
    with pytest.raises(taskmesh.ActorNotFound):
        ref.ask(1)


def test_tell_to_a_stopped_actor_is_a_dead_letter(system: ActorSystem, kind: Kind) -> None:
    ref = system.spawn(kind(Worker), name="w")
    ref.stop()
    ref.tell("lost")
    letters = system.dead_letters.recent()
    assert [(d.recipient, d.message, d.reason) for d in letters] == [
        ("w", "lost", "actor_not_found")
    ]


class Selfish(Both):
    async def handle(self, message: Any) -> Any:
        if message == "sync":
            return self.ref.ask("again", timeout=1)
        return await self.ref.ask_async("again", timeout=1)


def test_an_actor_asking_itself_gets_a_clear_error(system: ActorSystem, kind: Kind) -> None:
    ref = system.spawn(kind(Selfish), name="selfish")
    with pytest.raises(taskmesh.TaskmeshError, match=r"asked itself|event loop"):
        ref.ask("sync")
    with pytest.raises(taskmesh.TaskmeshError, match="asked itself"):
        ref.ask("async")


def test_ref_reaches_an_actor_spawned_again_under_the_same_name(
    system: ActorSystem, kind: Kind
) -> None:
    first = system.spawn(kind(Worker), name="w")
    first.stop()
    system.spawn(kind(Worker), name="w")
    assert first.ask("x") == "x"


def test_ask_async_returns_a_reply_to_wait_on(system: ActorSystem, kind: Kind) -> None:
    ref = system.spawn(kind(Worker), name="w")
    replies = [ref.ask_async(i, timeout=10) for i in range(100)]
    assert [r.get(10) for r in replies] == list(range(100))


def test_names_lists_live_actors(system: ActorSystem, kind: Kind) -> None:
    system.spawn(kind(Worker), name="b")
    system.spawn(kind(Worker), name="a")
    assert system.names() == ["a", "b"]
    wait_until(lambda: system.ref("a").stop())
    assert system.names() == ["b"]


def test_stop_actor_stops_a_supervised_child_for_good(system: ActorSystem, kind: Kind) -> None:
    system.spawn(taskmesh.Supervisor, name="sup", children=[taskmesh.Child(kind(Worker), name="w")])
    assert system.stop_actor("w", timeout=10) is True
    assert system.local("w") is None
    assert system.stop_actor("w") is True
