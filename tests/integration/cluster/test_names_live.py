"""Cluster-wide names against a real etcd: claims, races, release, cache lookups."""

from __future__ import annotations

import threading

import pytest

from taskmesh.cluster import ClusterMember, NameRecord
from taskmesh.errors import InvalidName, NameTaken
from tests.etcd_fixtures import MemberFactory, wait_until, wait_until_value

pytestmark = pytest.mark.integration


def race(members: list[ClusterMember], name: str) -> dict[str, NameRecord | NameTaken]:
    """Every member claims ``name`` at the same moment; returns each outcome."""
    barrier = threading.Barrier(len(members))
    outcome: dict[str, NameRecord | NameTaken] = {}

    def claim(member: ClusterMember) -> None:
        barrier.wait()
        try:
            record = member.register_actor(name)
            assert record is not None
            outcome[member.node] = record
        except NameTaken as exc:
            outcome[member.node] = exc

    threads = [threading.Thread(target=claim, args=(m,)) for m in members]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcome


def test_a_name_race_between_two_members_has_one_winner(make_member: MemberFactory) -> None:
    a, b = make_member("a"), make_member("b")
    for round_ in range(5):
        name = f"contested-{round_}"
        outcome = race([a, b], name)
        winners = [n for n, o in outcome.items() if isinstance(o, NameRecord)]
        losers = [n for n, o in outcome.items() if isinstance(o, NameTaken)]
        assert len(winners) == 1 and len(losers) == 1, outcome
        for m in (a, b):
            record = wait_until_value(lambda m=m, name=name: m.lookup(name), 10)
            assert record.node == winners[0]


def test_get_or_create_returns_the_holder(make_member: MemberFactory) -> None:
    a, b = make_member("a"), make_member("b")
    record, mine = a.names.get_or_create("shared", "tcp://a")
    assert mine and record.node == "a"
    record, mine = b.names.get_or_create("shared", "tcp://b")
    assert not mine and record == NameRecord("shared", "a", "tcp://a", a.incarnation)


def test_a_released_name_can_be_claimed_by_another_member(make_member: MemberFactory) -> None:
    a, b = make_member("a"), make_member("b")
    a.register_actor("worker")
    with pytest.raises(NameTaken):
        b.register_actor("worker")
    a.unregister_actor("worker")
    assert b.register_actor("worker") is not None
    wait_until(lambda: (r := a.lookup("worker")) is not None and r.node == "b", 10)


def test_invalid_names_are_refused(make_member: MemberFactory) -> None:
    a = make_member("a")
    with pytest.raises(InvalidName):
        a.register_actor("has/slash")
