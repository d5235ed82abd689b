"""A member cut off from etcd while it keeps running: it steps down and yields its names."""

from __future__ import annotations

import pytest

from taskmesh.cluster import ClusterMember, ClusterSettings, EmbeddedEtcd
from tests.etcd_fixtures import LEASE_TTL, SLACK, TcpProxy, unique_cluster, wait_until

pytestmark = pytest.mark.integration


def test_a_partitioned_member_loses_its_lease_its_lead_and_a_name_taken_meanwhile(
    etcd: EmbeddedEtcd,
) -> None:
    proxy = TcpProxy(int(etcd.endpoint.rsplit(":", 1)[1]))
    cluster = unique_cluster()
    cut_off = ClusterMember(ClusterSettings(etcd=proxy.endpoint, cluster=cluster, node="cut"))
    other = ClusterMember(ClusterSettings(etcd=etcd.endpoint, cluster=cluster, node="other"))
    lost: list[str] = []
    try:
        cut_off.start()
        cut_off.on_name_lost(lost.append)
        cut_off.register_actor("svc", capabilities=["cap"])
        cut_off.register_actor("kept")
        wait_until(lambda: cut_off.is_leader, 10, what="cut_off leads")
        other.start()
        wait_until(lambda: other.lookup("svc") is not None, 10)

        proxy.cut()
        # Within its TTL the partitioned node stops acting as leader by itself...
        wait_until(lambda: not cut_off.is_leader, LEASE_TTL + 1, what="cut_off steps down")
        # ...and once etcd expires its lease, the others see it gone and take over.
        wait_until(lambda: "cut" not in other.members(), LEASE_TTL + SLACK, what="cut gone")
        wait_until(lambda: other.is_leader, SLACK, what="other leads")
        assert other.lookup("svc") is None and other.route("cap") == []
        other.register_actor("svc")  # the name is free now

        proxy.restore()
        wait_until(lambda: cut_off.registered, 15, what="cut_off registered again")
        wait_until(lambda: lost == ["svc"], 10, what="cut_off told it lost svc")
        assert cut_off.names.owned() == {"kept"}
        wait_until(lambda: "cut" in other.members(), 10)
        record = other.lookup("kept")
        assert record is not None and record.node == "cut"  # re-claimed under the new lease
        svc = other.lookup("svc")
        assert svc is not None and svc.node == "other"
        assert other.is_leader and not cut_off.is_leader
        routes, _ = other.client.get_prefix(other.keys.routes)
        assert routes == []  # the loser does not advertise the actor whose name it lost
    finally:
        other.stop()
        cut_off.stop()
        proxy.close()
