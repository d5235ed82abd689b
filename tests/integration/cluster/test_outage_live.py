"""etcd outages against real etcd processes: caches serve, registrations come back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from taskmesh.cluster import ClusterMember, ClusterSettings, EmbeddedEtcd, start_quorum
from taskmesh.cluster.embedded import free_port
from taskmesh.errors import EtcdUnavailable, LeaseLost
from tests.etcd_fixtures import unique_cluster, wait_until

pytestmark = pytest.mark.integration


def members_of(endpoints: str | list[str], *nodes: str, **settings: Any) -> list[ClusterMember]:
    cluster = unique_cluster()
    return [
        ClusterMember(
            ClusterSettings(
                etcd=endpoints, cluster=cluster, node=n, address=f"tcp://{n}", **settings
            )
        )
        for n in nodes
    ]


@pytest.fixture
def stoppable() -> Iterator[list[ClusterMember]]:
    """Members to stop after the test, whatever happened."""
    members: list[ClusterMember] = []
    try:
        yield members
    finally:
        for m in members:
            m.stop()


def test_caches_serve_through_an_outage_and_registration_returns(
    private_etcd: EmbeddedEtcd, stoppable: list[ClusterMember]
) -> None:
    a, b = members_of(private_etcd.endpoint, "a", "b")
    stoppable += [a, b]
    a.start()
    b.start()
    a.register_actor("svc", capabilities=["cap"])
    wait_until(lambda: b.lookup("svc") is not None and b.route("cap"), 10, what="b sees svc")
    old_lease = a.lease.lease_id

    private_etcd.stop()
    outage_end = time.monotonic() + 10
    while time.monotonic() < outage_end:  # the outage itself: keep asking b meanwhile
        record = b.lookup("svc")
        assert record is not None and record.node == "a"
        assert [r.actor for r in b.route("cap")] == ["svc"]
        assert set(b.members()) == {"a", "b"}
        time.sleep(0.2)
    assert not a.registered  # its lease is presumed lost: leader duties pause
    assert not a.is_leader and not b.is_leader

    private_etcd.start()  # same data directory, same ports
    wait_until(lambda: a.registered and b.registered, 20, what="re-registered")
    assert a.lease.lease_id != old_lease
    kv = a.client.get(a.keys.name("svc"))
    assert kv is not None and kv.lease == a.lease.lease_id  # name re-claimed under new lease
    wait_until(lambda: set(b.members()) == {"a", "b"}, 10)
    wait_until(lambda: b.members()["a"].lease == a.lease.lease_id, 10, what="b resynced")
    wait_until(lambda: a.is_leader != b.is_leader, 10, what="one leader again")
    b.register_actor("after", capabilities=["cap"])
    wait_until(lambda: len(a.route("cap", "broadcast")) == 2, 10, what="routes resynced")


def test_a_three_member_quorum_survives_losing_one_member(
    stoppable: list[ClusterMember],
) -> None:
    with start_quorum(3) as quorum:
        a, b, c = members_of(quorum.endpoints, "a", "b", "c")
        stoppable += [a, b, c]
        a.start()
        b.start()
        a.register_actor("before")
        in_use = a.client.raw.endpoint_in_use.netloc
        victim = next(m for m in quorum.members if m.endpoint.endswith(in_use))
        victim.kill()

        def claim_during() -> bool:
            try:
                a.register_actor("during")  # fails over to a live member
            except (EtcdUnavailable, LeaseLost):
                return False  # etcd may be electing a new raft leader
            return True

        took = wait_until(claim_during, 15, what="a write through the surviving members")
        assert took < 10
        c.start()
        for m in (a, b, c):
            wait_until(lambda m=m: set(m.members()) == {"a", "b", "c"}, 15, what="all in view")
            wait_until(lambda m=m: m.lookup("during") is not None, 15, what="name seen")
        wait_until(lambda: sum(m.is_leader for m in (a, b, c)) == 1, 15, what="a leader")
        lease = a.lease.lease_id
        time.sleep(a.settings.lease_ttl + 1)  # a full TTL: the lease must be kept alive
        assert a.lease.lease_id == lease and a.registered


def test_a_member_cannot_start_without_etcd() -> None:
    (member,) = members_of(f"http://127.0.0.1:{free_port()}", "lonely", start_timeout=1.0)
    with pytest.raises(EtcdUnavailable):
        member.start()
    member.stop()  # stopping a member that never started is harmless
