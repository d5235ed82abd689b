"""Membership against a real etcd: joins, leaves, and a SIGKILLed member's lease expiry."""

from __future__ import annotations

import signal
import time

import pytest

from taskmesh.cluster import ClusterMember, ClusterSettings, EmbeddedEtcd, MemberEvent
from taskmesh.errors import LeaseLost
from tests.etcd_fixtures import LEASE_TTL, SLACK, MemberFactory, child_member, wait_until

pytestmark = pytest.mark.integration


def test_every_member_sees_joins_and_leaves(make_member: MemberFactory) -> None:
    a = make_member("a", capabilities=frozenset({"gpu"}))
    events: list[MemberEvent] = []
    a.on_member_event(events.append)
    b = make_member("b")
    c = make_member("c")
    for m in (a, b, c):
        wait_until(lambda m=m: set(m.members()) == {"a", "b", "c"}, 10, what="all joined")
    assert a.members()["a"].capabilities == {"gpu"}
    assert c.members()["a"].address == "tcp://127.0.0.1:1/a"
    c.stop()
    for m in (a, b):
        wait_until(lambda m=m: set(m.members()) == {"a", "b"}, 10, what="c left")
    kinds = [(e.kind, e.member.node) for e in events if e.kind != "update"]
    assert ("join", "b") in kinds and ("join", "c") in kinds and ("leave", "c") in kinds


def test_load_is_published_with_the_mailbox_total(make_member: MemberFactory) -> None:
    a = make_member("a", load_interval=0.2, mailbox_total=lambda: 7)
    wait_until(
        lambda: "a" in a.members() and a.members()["a"].load.mailbox == 7,
        10,
        what="load published",
    )


def test_a_killed_member_vanishes_with_its_names_and_routes_within_its_ttl(
    etcd: EmbeddedEtcd, cluster: str, make_member: MemberFactory
) -> None:
    observer = make_member("observer")
    with child_member(
        etcd=etcd.endpoint,
        cluster=cluster,
        node="victim",
        names=["victim-actor"],
        capabilities=["resize"],
    ) as victim:
        wait_until(lambda: "victim" in observer.members(), 10, what="victim joined")
        wait_until(lambda: observer.lookup("victim-actor") is not None, 10, what="name seen")
        wait_until(lambda: observer.route("resize"), 10, what="route seen")
        killed = time.monotonic()
        victim.signal(signal.SIGKILL)
        wait_until(lambda: "victim" not in observer.members(), 10, what="victim gone")
        # Members, names and routes come through separate watches: each may
        # lag the others a little, all are gone within the TTL.
        wait_until(
            lambda: observer.lookup("victim-actor") is None and observer.route("resize") == [],
            10,
            what="names and routes gone",
        )
        gone = time.monotonic() - killed
        assert gone < LEASE_TTL + SLACK, gone
        print(f"SIGKILL -> gone from view: {time.monotonic() - killed:.2f}s")


def test_an_observer_sees_the_cluster_without_joining_it(
    etcd: EmbeddedEtcd, cluster: str, make_member: MemberFactory
) -> None:
    a = make_member("a")
    a.register_actor("echo", capabilities=["echo"])
    observer = ClusterMember(
        ClusterSettings(etcd=etcd.endpoint, cluster=cluster, node="client"), observer=True
    )
    try:
        observer.start()
        wait_until(lambda: observer.route("echo") and observer.lookup("echo"), 10)
        assert set(observer.members()) == {"a"}
        assert set(a.members()) == {"a"} and observer.leader == "a"
        with pytest.raises(LeaseLost):
            observer.register_actor("nope")
    finally:
        observer.stop()


def test_members_at_rest_write_nothing_that_wakes_the_others(
    make_member: MemberFactory,
) -> None:
    """Load goes to an unwatched prefix: a member record is written once per lease."""
    a = make_member("a", load_interval=0.2)
    b = make_member("b", load_interval=0.2)
    record = a.client.get(a.keys.member("b"))
    assert record is not None
    events: list[MemberEvent] = []
    a.on_member_event(events.append)
    wait_until(lambda: b.loads.writes >= 1, 10, what="b published its load once")
    rest_until = time.monotonic() + 3.0
    wait_until(lambda: time.monotonic() >= rest_until, 5, what="three seconds at rest")
    assert events == [], "a member record was rewritten at rest"
    again = a.client.get(a.keys.member("b"))
    assert again is not None and again.mod_revision == record.mod_revision
    # The load is still there for whoever reads it, without a watch.
    wait_until(lambda: a.loads.get("b") is not None, 10, what="a reads b's load")
