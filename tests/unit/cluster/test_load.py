"""When a node's load is worth publishing again."""

from __future__ import annotations

import pytest

from taskmesh.cluster.load import changed
from taskmesh.cluster.membership import Load

BASE = Load(cpu=30.0, memory=40.0, mailbox=100, messages=5000, rate=200.0)


@pytest.mark.parametrize(
    "new",
    [
        Load(cpu=50.0, memory=40.0, mailbox=100, messages=9000, rate=200.0),
        Load(cpu=30.0, memory=50.0, mailbox=100, messages=9000, rate=200.0),
        Load(cpu=30.0, memory=40.0, mailbox=0, messages=9000, rate=200.0),
        Load(cpu=30.0, memory=40.0, mailbox=150, messages=9000, rate=200.0),
        Load(cpu=30.0, memory=40.0, mailbox=100, messages=9000, rate=0.0),
        Load(cpu=30.0, memory=40.0, mailbox=100, messages=9000, rate=301.0),
    ],
)
def test_a_meaningful_change_is_published(new: Load) -> None:
    assert changed(BASE, new)


@pytest.mark.parametrize(
    "new",
    [
        BASE,
        Load(cpu=45.0, memory=45.0, mailbox=140, messages=9000, rate=260.0),
        Load(cpu=15.0, memory=35.0, mailbox=60, messages=5000, rate=150.0),
    ],
)
def test_small_changes_and_a_growing_message_count_are_not(new: Load) -> None:
    assert not changed(BASE, new)


def test_an_idle_node_stays_quiet_and_its_first_message_is_news() -> None:
    idle = Load(cpu=3.0, memory=20.0)
    assert not changed(idle, Load(cpu=9.0, memory=21.0))
    assert changed(idle, Load(cpu=3.0, memory=20.0, mailbox=1))
    assert changed(idle, Load(cpu=3.0, memory=20.0, messages=4, rate=2.0))
