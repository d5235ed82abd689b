"""A named spawn while etcd is down fails clearly within --claim-timeout and leaves nothing behind."""

from __future__ import annotations

import json

import pytest

import taskmesh
from taskmesh.cluster import EmbeddedEtcd
from tests.faults.conftest import Nodes
from tests.integration.node.support import cli
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


def test_a_named_spawn_during_an_etcd_outage_fails_clearly_and_leaves_nothing(
    etcd: EmbeddedEtcd, nodes: Nodes
) -> None:
    nodes.start("sp", "--app", "tests.faults.apps:spawner", "--claim-timeout", "2")
    flags = ("--etcd", nodes.etcd_url, "--cluster", nodes.cluster)

    def actors() -> set[str]:
        done = cli("actors", "--json", *flags)
        assert done.returncode == 0, done.stderr
        return {row["name"] for row in json.loads(done.stdout)}

    with taskmesh.connect(etcd=nodes.etcd_url, cluster=nodes.cluster) as client:
        wait_until(lambda: client.resolve("spawner-sp"), 30, message="spawner in the cache")
        spawner = client.ref("spawner-sp")
        etcd.stop()
        reply = spawner.ask({"spawn": "late"}, timeout=30.0)
        assert reply["error"] == "EtcdUnavailable", reply
        assert "could not register late" in reply["text"]
        assert "nothing was registered" in reply["text"]
        assert "late" not in spawner.ask("local", timeout=10.0)  # nothing left on the node
        etcd.start()
        wait_until(lambda: [m["node"] for m in nodes.members()] == ["sp"], 30)
        assert "late" not in actors()  # nor in etcd
        assert spawner.ask({"spawn": "late"}, timeout=30.0) == "spawned"
    assert "late" in actors()
