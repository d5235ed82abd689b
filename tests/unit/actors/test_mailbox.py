from __future__ import annotations

import threading

import pytest

import taskmesh
from taskmesh.actors import ActorSystem
from taskmesh.actors.mailbox import Mailbox
from tests.unit.actors.support import Gate, Kind, Worker
from tests.waiting import wait_until


def test_block_false_sheds_a_tell_to_a_full_mailbox_at_once(
    system: ActorSystem, kind: Kind
) -> None:
    gate = Gate()
    ref = system.spawn(kind(Worker), name="w", gate=gate, mailbox_size=100)
    ref.tell("wait")
    wait_until(lambda: system.mailbox_depths()["w"] == 0)
    for i in range(10_000):
        ref.tell(i, block=False)
    assert system.mailbox_depths()["w"] == 100
    assert system.dead_letters.counts()["mailbox_full"] == 9_900
    gate.set()
    assert ref.ask("handled") == list(range(100))


def test_the_system_default_mailbox_size_applies(kind: Kind) -> None:
    with taskmesh.ActorSystem(mailbox_size=2, send_timeout=0.05) as system:
        gate = Gate()
        ref = system.spawn(kind(Worker), name="w", gate=gate)
        ref.tell("wait")
        wait_until(lambda: system.mailbox_depths()["w"] == 0)
        ref.tell(1)
        ref.tell(2)
        with pytest.raises(taskmesh.MailboxFull):
            ref.tell(3)
        gate.set()


def test_mailbox_size_must_be_positive() -> None:
    with pytest.raises(taskmesh.ConfigError):
        taskmesh.ActorSystem(mailbox_size=0)


def test_a_space_waiter_runs_once_on_the_consumer_when_the_lane_drains_to_half() -> None:
    mailbox = Mailbox(4)
    for i in range(4):
        mailbox.put((0, i, None, None))
    calls: list[str] = []
    assert mailbox.on_space(lambda: calls.append(threading.current_thread().name)) is True
    mailbox.get()
    mailbox.made_room()
    assert calls == [], "3 queued is above the low-water mark of 2"
    mailbox.get()
    mailbox.made_room()
    mailbox.get()
    mailbox.made_room()
    assert calls == [threading.current_thread().name], "once, on the consumer's thread"


def test_on_space_registers_nothing_when_there_is_room_already() -> None:
    mailbox = Mailbox(4)
    mailbox.put((0, 1, None, None))
    assert mailbox.on_space(lambda: None) is False
    assert mailbox._space is None


def test_space_waiters_are_called_when_the_mailbox_is_drained_for_good() -> None:
    mailbox = Mailbox(2)
    mailbox.put((0, 1, None, None))
    mailbox.put((0, 2, None, None))
    called = threading.Event()
    assert mailbox.on_space(called.set)
    assert [m for _, m, _, _ in mailbox.drain()] == [1, 2]
    assert called.is_set()
