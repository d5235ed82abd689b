from __future__ import annotations

import threading

import pytest

import taskmesh
from taskmesh.actors import ActorSystem
from tests.unit.actors.support import Worker
from tests.waiting import wait_until


def test_a_full_mailbox_refuses_an_ask_and_dead_letters_a_tell(system: ActorSystem) -> None:
    gate = threading.Event()
    ref = system.spawn(Worker, name="w", gate=gate, mailbox_size=3)
    ref.tell("wait")
    wait_until(lambda: system.mailbox_depths()["w"] == 0, message="the actor took 'wait'")
    for i in range(3):
        ref.tell(i)
    with pytest.raises(taskmesh.MailboxFull):
        ref.ask("one too many")
    ref.tell("dropped")
    assert system.dead_letters.counts() == {"mailbox_full": 1}
    gate.set()
    wait_until(lambda: system.mailbox_depths()["w"] == 0)
    assert ref.ask("handled") == [0, 1, 2]


def test_a_mailbox_does_not_grow_past_its_bound(system: ActorSystem) -> None:
    gate = threading.Event()
    ref = system.spawn(Worker, name="w", gate=gate, mailbox_size=100)
    ref.tell("wait")
    wait_until(lambda: system.mailbox_depths()["w"] == 0)
    for i in range(10_000):
        ref.tell(i)
    assert system.mailbox_depths()["w"] == 100
    assert system.dead_letters.counts()["mailbox_full"] == 9_900
    gate.set()


def test_the_system_default_mailbox_size_applies(journal: object) -> None:
    with taskmesh.ActorSystem(mailbox_size=2) as system:
        gate = threading.Event()
        ref = system.spawn(Worker, name="w", gate=gate)
        ref.tell("wait")
        wait_until(lambda: system.mailbox_depths()["w"] == 0)
        ref.tell(1)
        ref.tell(2)
        with pytest.raises(taskmesh.MailboxFull):
            ref.ask(3)
        gate.set()


def test_mailbox_size_must_be_positive() -> None:
    with pytest.raises(taskmesh.ConfigError):
        taskmesh.ActorSystem(mailbox_size=0)
