"""etcd history is compacted: by the leader on an external etcd, by the embedded etcd itself.

A short soak with membership churn: the database stops growing once
compaction runs, and the members' caches stay right across compactions.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator

import pytest

from taskmesh.cluster import ClusterMember, ClusterSettings, EmbeddedEtcd
from taskmesh.cluster.etcd import EtcdClient
from tests.etcd_fixtures import unique_cluster, wait_until

pytestmark = pytest.mark.integration

CHURN = 5.0
"""Seconds per soak phase (many compaction intervals of one second)."""

BULKY = "tcp://127.0.0.1:1/" + "x" * 1000
"""An address that makes each name and route about 1 KB, so history weighs."""


def etcd_metric(etcd: EmbeddedEtcd, name: str) -> float:
    """One gauge from etcd's own /metrics."""
    with urllib.request.urlopen(etcd.endpoint + "/metrics", timeout=5) as reply:
        body = reply.read().decode()
    found = re.search(rf"^{name} (\S+)$", body, re.MULTILINE)
    assert found, f"etcd exports no {name}"
    return float(found.group(1))


def churn(etcd: EmbeddedEtcd, cluster: str, seconds: float) -> int:
    """Members join, register 30 names with two capabilities each, and leave; returns cycles."""
    cycles = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        node = f"churn{cycles % 3}"
        member = ClusterMember(
            ClusterSettings(etcd=etcd.endpoint, cluster=cluster, node=node, address=BULKY)
        )
        member.start()
        try:
            for k in range(30):
                member.register_actor(f"a{k}-{node}", capabilities=["x", "y"])
        finally:
            member.stop()
        cycles += 1
    return cycles


@pytest.fixture
def bare_etcd() -> Iterator[EmbeddedEtcd]:
    """An etcd that never compacts by itself, as an external one may be run."""
    server = EmbeddedEtcd(auto_compaction_retention="0").start()
    try:
        yield server
    finally:
        server.close()


def test_the_leader_compacts_an_external_etcd_and_its_size_stays_flat_under_churn(
    bare_etcd: EmbeddedEtcd,
) -> None:
    cluster = unique_cluster()
    settings = ClusterSettings(
        etcd=bare_etcd.endpoint, cluster=cluster, node="leader", compaction_interval=1.0
    )
    follower_settings = ClusterSettings(
        etcd=bare_etcd.endpoint, cluster=cluster, node="follower", compaction_interval=1.0
    )
    with ClusterMember(settings) as leader, ClusterMember(follower_settings) as follower:
        wait_until(lambda: leader.is_leader, 20, what="the first member leads")
        leader.register_actor("kept", capabilities=["x"])
        churn(bare_etcd, cluster, CHURN)  # compaction starts within this phase
        assert leader.compactor.compacted > 0, "the leader never compacted"
        with EtcdClient(bare_etcd.endpoint) as probe:
            warm = probe.status()
            cycles = churn(bare_etcd, cluster, CHURN)
            hot = probe.status()
        assert cycles >= 10, f"only {cycles} churn cycles: the soak proved nothing"
        assert hot.revision - warm.revision >= 30 * cycles  # 30 names and more per cycle
        # Without compaction, each cycle adds about 60 KB of history (measured:
        # the file nearly doubled over the same phase).
        assert hot.db_size <= warm.db_size * 1.3, (warm, hot)
        assert etcd_metric(bare_etcd, "etcd_debugging_mvcc_compact_revision") > warm.revision
        assert follower.compactor.compacted == 0, "only the leader compacts"
        # The watch-fed caches are still right after many compactions.
        assert follower.lookup("kept") is not None
        assert set(follower.names.all()) == {"kept"}
        assert [r.actor for r in follower.routing.routes("x")] == ["kept"]


def test_the_embedded_etcd_compacts_its_own_history() -> None:
    server = EmbeddedEtcd(auto_compaction_retention="1s").start()
    try:
        with EtcdClient(server.endpoint) as client:
            first = client.put("/t/compaction/k", b"1")
            client.put("/t/compaction/k", b"2")
            wait_until(
                lambda: etcd_metric(server, "etcd_debugging_mvcc_compact_revision") >= first,
                30,
                what="etcd compacted its own history",
            )
            client.put("/t/compaction/k", b"3")
            assert client.get("/t/compaction/k").value == b"3"  # type: ignore[union-attr]
    finally:
        server.close()
