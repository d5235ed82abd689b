"""Flow control: a full mailbox slows its senders down instead of losing messages."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import taskmesh
from taskmesh.actors import ActorSystem
from taskmesh.actors.future import forbid_waiting
from tests.unit.actors.support import Both, Gate, Kind, Worker
from tests.waiting import wait_until


class Counter(Both):
    def __init__(self) -> None:
        self.count = 0

    async def handle(self, message: Any) -> Any:
        if message == "count":
            return self.count
        self.count += 1
        return None


def test_300000_tells_from_a_producer_thread_to_a_default_mailbox_all_arrive(
    system: ActorSystem, kind: Kind
) -> None:
    ref = system.spawn(kind(Counter), name="c")
    sent = 300_000

    def produce() -> None:
        for i in range(sent):
            ref.tell(i)

    producer = threading.Thread(target=produce)
    producer.start()
    producer.join(120)
    assert ref.ask("count", timeout=60) == sent
    assert system.dead_letters.total == 0


def full_worker(system: ActorSystem, size: int, kind: Kind) -> tuple[taskmesh.ActorRef, Gate]:
    gate = Gate()
    ref = system.spawn(kind(Worker), name="w", gate=gate, mailbox_size=size)
    ref.tell("wait")
    wait_until(lambda: system.mailbox_depths()["w"] == 0, message="the actor took 'wait'")
    for i in range(size):
        ref.tell(i)
    return ref, gate


def test_a_tell_to_a_full_mailbox_blocks_until_there_is_room_and_arrives(
    system: ActorSystem, kind: Kind
) -> None:
    ref, gate = full_worker(system, 3, kind)
    returned = threading.Event()

    def send() -> None:
        ref.tell("late")
        returned.set()

    sender = threading.Thread(target=send)
    sender.start()
    assert not returned.is_set(), "no room until the actor moves on"
    gate.set()
    assert returned.wait(30)
    assert ref.ask("handled") == [0, 1, 2, "late"]
    assert system.dead_letters.total == 0
    sender.join(10)


def test_a_tell_that_finds_no_room_within_the_send_timeout_raises_and_is_a_dead_letter(
    kind: Kind,
) -> None:
    with taskmesh.ActorSystem(send_timeout=0.1) as system:
        ref, gate = full_worker(system, 2, kind)
        with pytest.raises(taskmesh.MailboxFull, match=r"no room within 0\.1 s"):
            ref.tell("refused")
        letters = system.dead_letters.recent()
        assert [(d.message, d.reason) for d in letters] == [("refused", "mailbox_full")]
        gate.set()
        assert ref.ask("handled") == [0, 1]


def test_an_ask_to_a_full_mailbox_waits_for_room_within_its_own_timeout(
    system: ActorSystem, kind: Kind
) -> None:
    ref, gate = full_worker(system, 2, kind)
    with pytest.raises(taskmesh.MailboxFull):
        ref.ask("too late", timeout=0.1)
    assert system.dead_letters.total == 0, "a refused ask is an error, not a dead letter"
    answers: list[Any] = []
    asker = threading.Thread(target=lambda: answers.append(ref.ask("patient", timeout=30)))
    asker.start()
    gate.set()
    asker.join(30)
    assert answers == ["patient"]


def test_a_thread_that_must_not_block_sheds_a_tell_to_a_full_mailbox_at_once(kind: Kind) -> None:
    with taskmesh.ActorSystem(send_timeout=60) as system:
        ref, gate = full_worker(system, 2, kind)
        errors: list[BaseException] = []

        def io_thread() -> None:
            forbid_waiting(threading.get_ident())
            try:
                ref.tell("from the I/O thread")
            except taskmesh.MailboxFull as error:
                errors.append(error)
            finally:
                forbid_waiting(threading.get_ident(), False)

        thread = threading.Thread(target=io_thread)
        thread.start()
        thread.join(30)
        assert len(errors) == 1 and "I/O thread" in str(errors[0])
        assert system.dead_letters.counts() == {"mailbox_full": 1}
        gate.set()


class Chatty(Both):
    """On ("go", peer, n) tells ``peer`` n messages (an async actor with
    ``tell_async``); counts what it gets."""

    def __init__(self) -> None:
        self.got = 0

    async def handle(self, message: Any) -> Any:
        if message == "got":
            return self.got
        if isinstance(message, tuple):
            _, peer, n = message
            target = self.ref if peer == "self" else self.system.ref(peer)
            for i in range(n):
                if asyncio.iscoroutinefunction(type(self).receive):
                    await target.tell_async(i)
                else:
                    target.tell(i)
            return None
        self.got += 1
        return None


def test_an_actor_telling_itself_past_a_full_mailbox_does_not_wait(kind: Kind) -> None:
    with taskmesh.ActorSystem(send_timeout=60) as system:
        ref = system.spawn(kind(Chatty), name="me", mailbox_size=2)
        ref.tell(("go", "self", 50))
        wait_until(lambda: ref.ask("got", timeout=30) == 50, timeout=30)
        assert system.dead_letters.total == 0


def test_two_actors_telling_each_other_in_a_cycle_do_not_deadlock(kind: Kind) -> None:
    with taskmesh.ActorSystem(send_timeout=60) as system:
        a = system.spawn(kind(Chatty), name="a", mailbox_size=2)
        b = system.spawn(kind(Chatty), name="b", mailbox_size=2)
        a.tell(("go", "b", 200))
        b.tell(("go", "a", 200))
        # Without the cycle rule both would wait for the 60 s send timeout.
        wait_until(lambda: (a.ask("got", timeout=30), b.ask("got", timeout=30)) == (200, 200))
        assert system.dead_letters.total == 0


def test_a_blocked_sender_is_released_when_the_actor_stops(system: ActorSystem, kind: Kind) -> None:
    ref, gate = full_worker(system, 2, kind)
    returned = threading.Event()

    def send() -> None:
        ref.tell("lost with the actor")
        returned.set()

    sender = threading.Thread(target=send)
    sender.start()
    ref.stop(timeout=None)
    gate.set()
    assert returned.wait(30)
    sender.join(10)
    wait_until(lambda: system.dead_letters.counts().get("actor_stopped", 0) >= 1)


def test_the_system_tells_a_non_consumer_when_a_full_mailbox_has_room(
    system: ActorSystem, kind: Kind
) -> None:
    _, gate = full_worker(system, 4, kind)
    room = threading.Event()
    assert system.on_space("w", room.set) is True
    assert system.on_space("nobody", room.set) is False
    assert not room.is_set()
    gate.set()
    assert room.wait(30)
    assert system.on_space("w", room.set) is False, "room already: nothing registered"
