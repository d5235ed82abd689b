"""``node.spawn_many``: many cluster-named actors, their names claimed in batches, all or none."""

from __future__ import annotations

from typing import Any

import pytest

import taskmesh
from taskmesh.cluster import EmbeddedEtcd
from taskmesh.cluster.etcd import EtcdClient
from taskmesh.errors import NameTaken
from tests.etcd_fixtures import unique_cluster, wait_until

pytestmark = pytest.mark.integration


class Sensor(taskmesh.Actor):
    capabilities = ("sensor",)

    def receive(self, message: Any) -> Any:
        return {"sensor": self.name, "got": message}


def test_spawn_many_claims_names_in_batches_and_all_or_none(etcd: EmbeddedEtcd) -> None:
    cluster = unique_cluster()
    with (
        taskmesh.Node(cluster=cluster, etcd=etcd.endpoint, name="many") as node,
        taskmesh.Node(cluster=cluster, etcd=etcd.endpoint, name="other") as other,
        EtcdClient(etcd.endpoint) as probe,
    ):
        other.spawn(Sensor, name="s-0150")
        with pytest.raises(NameTaken, match="'s-0150'"):
            node.spawn_many(Sensor, [f"s-{i:04d}" for i in range(300)])
        assert not [n for n in node.system.names() if n.startswith("s-")]

        before = probe.revision()
        names = [f"s-{i:04d}" for i in range(300) if i != 150]
        refs = node.spawn_many(Sensor, names)
        assert len(refs) == 299
        # one transaction per 64 names (counted by this cluster's own keys: other
        # tests may write to the same etcd meanwhile)
        root = f"/taskmesh/{cluster}/"
        kvs = [kv for part in ("names/", "routes/") for kv in probe.get_prefix(root + part)[0]]
        assert len({kv.mod_revision for kv in kvs if kv.mod_revision > before}) <= 299 // 64 + 1
        assert not node._registrar._claimed, "every claimed name was spawned"
        with taskmesh.connect(etcd=etcd.endpoint, cluster=cluster) as client:
            wait_until(lambda: client.resolve("s-0299") is not None, 10, what="names visible")
            assert client.ref("s-0007").ask("hi", timeout=10.0) == {"sensor": "s-0007", "got": "hi"}
            assert client.ref("s-0150").ask("hi", timeout=10.0)["sensor"] == "s-0150"
            wait_until(lambda: len(client.routes().get("sensor", [])) == 300, 10)
