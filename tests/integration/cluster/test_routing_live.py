"""Capability routing against a real etcd: strategies, suspects, node labels."""

from __future__ import annotations

from collections import Counter

import pytest

from taskmesh.cluster import ClusterMember, Route
from tests.etcd_fixtures import MemberFactory, wait_until

pytestmark = pytest.mark.integration


DEPTH = {"a": 50, "b": 3, "c": 20}


def three_holders(make_member: MemberFactory) -> tuple[ClusterMember, list[ClusterMember]]:
    members = [
        make_member(n, load_interval=0.2, mailbox_total=lambda n=n: DEPTH[n])
        for n in ("a", "b", "c")
    ]
    for m in members:
        m.register_actor(f"resizer-{m.node}", capabilities=["image.resize"])
    client = members[0]
    wait_until(lambda: len(client.routing.routes("image.resize")) == 3, 10, what="3 routes")
    return client, members


def test_round_robin_cycles_through_every_holder(make_member: MemberFactory) -> None:
    client, _ = three_holders(make_member)
    picks = [client.route("image.resize")[0].actor for _ in range(9)]
    assert Counter(picks) == {"resizer-a": 3, "resizer-b": 3, "resizer-c": 3}
    assert picks[:3] == picks[3:6]


def test_broadcast_returns_every_holder(make_member: MemberFactory) -> None:
    client, _ = three_holders(make_member)
    assert [r.node for r in client.route("image.resize", "broadcast")] == ["a", "b", "c"]


def test_consistent_hash_sends_a_key_to_the_same_actor(make_member: MemberFactory) -> None:
    client, members = three_holders(make_member)
    first = {
        k: client.route("image.resize", "consistent_hash", key=k)[0] for k in map(str, range(200))
    }
    assert len(set(first.values())) == 3  # keys spread over every holder
    again = {k: client.route("image.resize", "consistent_hash", key=k)[0] for k in first}
    assert again == first
    members[2].unregister_actor("resizer-c")
    wait_until(lambda: len(client.routing.routes("image.resize")) == 2, 10)
    after = {k: client.route("image.resize", "consistent_hash", key=k)[0] for k in first}
    for key, route in first.items():  # only the departed holder's keys moved
        if route.node != "c":
            assert after[key] == route


def test_least_loaded_picks_the_node_with_the_shortest_queues(
    make_member: MemberFactory,
) -> None:
    client, _ = three_holders(make_member)
    wait_until(lambda: all(client.members()[n].load.mailbox == d for n, d in DEPTH.items()), 10)
    assert {client.route("image.resize", "least_loaded")[0].node for _ in range(5)} == {"b"}


def test_excluded_nodes_are_skipped_by_every_strategy(make_member: MemberFactory) -> None:
    client, _ = three_holders(make_member)
    skip = frozenset({"a"})
    assert {client.route("image.resize", exclude=skip)[0].node for _ in range(6)} == {"b", "c"}
    assert [r.node for r in client.route("image.resize", "broadcast", exclude=skip)] == ["b", "c"]
    wait_until(lambda: all(client.members()[n].load.mailbox == d for n, d in DEPTH.items()), 10)
    assert client.route("image.resize", "least_loaded", exclude={"b"})[0].node == "c"
    for key in map(str, range(50)):
        chosen = client.route("image.resize", "consistent_hash", key=key, exclude=skip)
        assert chosen and chosen[0].node != "a"
    assert client.route("image.resize", exclude={"a", "b", "c"}) == []


def test_suspect_peers_are_skipped(make_member: MemberFactory) -> None:
    client, _ = three_holders(make_member)
    client.mark_suspect("b")
    seen = {client.route("image.resize")[0].node for _ in range(6)}
    assert seen == {"a", "c"}
    assert {r.node for r in client.route("image.resize", "broadcast")} == {"a", "c"}
    client.clear_suspect("b")
    assert {client.route("image.resize")[0].node for _ in range(6)} == {"a", "b", "c"}


def test_an_unknown_capability_routes_nowhere(make_member: MemberFactory) -> None:
    a = make_member("a")
    assert a.route("nobody.has.this") == []
    assert a.routing.capabilities() == {}
    a.register_actor("x", capabilities=["cap"], address="tcp://x")
    wait_until(lambda: a.route("cap") == [Route("a", "x", "tcp://x")], 10)
