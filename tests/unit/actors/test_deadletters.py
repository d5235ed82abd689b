from __future__ import annotations

import pytest

import taskmesh
from taskmesh.actors import ActorSystem, DeadLetter, DeadLetters
from tests.unit.actors.support import Gate, Kind, Worker
from tests.waiting import wait_until


def test_counts_by_reason_and_keeps_recent_letters() -> None:
    letters = DeadLetters(keep=2)
    letters.record("a", 1, "mailbox_full")
    letters.record("b", 2, "mailbox_full")
    letters.record("c", 3, "actor_not_found")
    assert letters.counts() == {"mailbox_full": 2, "actor_not_found": 1}
    assert letters.total == 3
    assert [d.recipient for d in letters.recent()] == ["b", "c"]


def test_subscribers_see_every_letter_until_they_unsubscribe() -> None:
    letters = DeadLetters()
    seen: list[DeadLetter] = []
    unsubscribe = letters.subscribe(seen.append)
    letters.record("a", 1, "expired", "why")
    unsubscribe()
    letters.record("a", 2, "expired")
    assert [(d.message, d.error) for d in seen] == [(1, "why")]


def test_a_failing_subscriber_does_not_lose_the_letter() -> None:
    letters = DeadLetters()

    def broken(letter: DeadLetter) -> None:
        raise RuntimeError("subscriber bug")

    letters.subscribe(broken)
    letters.record("a", 1, "expired")
    assert letters.total == 1


def test_logging_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    letters = DeadLetters(log_interval=3600)
    with caplog.at_level("WARNING", logger="taskmesh.deadletters"):
        for i in range(1000):
            letters.record("a", i, "mailbox_full")
    assert len(caplog.records) == 1
    assert letters.total == 1000


def test_messages_queued_when_an_actor_stops_become_dead_letters(
    system: ActorSystem, kind: Kind
) -> None:
    gate = Gate()
    ref = system.spawn(kind(Worker), name="w", gate=gate)
    ref.tell("wait")
    wait_until(lambda: system.mailbox_depths()["w"] == 0, message="the actor took 'wait'")
    for i in range(5):
        ref.tell(i)
    pending = ref.ask_async("never", timeout=30)
    # a stop for good overtakes the queue
    assert system.stop_actor("w", timeout=0) is False  # posted, not waited for
    gate.set()
    wait_until(lambda: system.info("w") is None)
    with pytest.raises(taskmesh.ActorNotFound):
        pending.get(30)
    assert system.dead_letters.counts()["actor_stopped"] == 5
    assert [d.message for d in system.dead_letters.recent()] == [0, 1, 2, 3, 4]


class Deaf(taskmesh.Actor):
    pass


def test_an_unhandled_message_is_a_dead_letter(system: ActorSystem) -> None:
    ref = system.spawn(Deaf, name="deaf")
    assert ref.ask("hello") is None
    assert system.dead_letters.counts() == {"unhandled": 1}
