"""A node's identity is fenced: a second node under a live node's name is refused,
and a node whose keys were deleted or whose lease was revoked registers everything again."""

from __future__ import annotations

import json

import pytest

from taskmesh.cluster import ClusterKeys
from taskmesh.cluster.etcd import EtcdClient
from tests.faults.conftest import Nodes
from tests.integration.node.support import NodeProcess, cli
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


def test_a_second_node_under_a_live_name_is_refused_and_keys_taken_away_come_back(
    nodes: Nodes,
) -> None:
    first = nodes.start("d1")
    flags = ("--etcd", nodes.etcd_url, "--cluster", nodes.cluster)
    second = NodeProcess(*flags, "--app", "tests.faults.apps:counter", name="d1")
    nodes.started.append(second)
    assert second.proc.wait(60) != 0
    errors = [line for line in second.stderr if line.startswith("taskmesh: error")]
    assert len(errors) == 1, second.stderr
    assert errors[0].startswith("taskmesh: error: node name 'd1' is in use by a live node")
    assert "Traceback" not in "\n".join(second.stderr)

    def actors() -> dict[str, str]:
        done = cli("actors", "--json", *flags)
        assert done.returncode == 0, done.stderr
        return {row["name"]: row["address"] for row in json.loads(done.stdout)}

    def serves() -> bool:
        done = cli("ask", "echo-d1", '"hi"', *flags)
        return done.returncode == 0 and json.loads(done.stdout)["node"] == "d1"

    held = actors()
    assert held == {name: first.address for name in ("counter-d1", "echo-d1", "relay-d1")}
    assert serves()

    keys = ClusterKeys(nodes.cluster)
    with EtcdClient(nodes.etcd_url) as etcd:
        # Everything of d1 deleted behind its back, its lease still alive.
        for prefix in (keys.members, keys.names, keys.routes):
            etcd.delete_prefix(prefix)
        wait_until(lambda: actors() == held, 30, message="names registered again")
        wait_until(lambda: [m["node"] for m in nodes.members()] == ["d1"], 30)
        routes = json.loads(cli("routes", "--json", *flags).stdout)
        mine = [(r["capability"], r["actor"]) for r in routes if r["actor"] != "_workflows"]
        assert mine == [("counter", "counter-d1")]
        assert serves()

        # Its lease revoked (as an expiry would): a new lease, everything again.
        record = etcd.get(keys.member("d1"))
        assert record is not None
        etcd.revoke(record.lease)
        wait_until(
            lambda: (r := etcd.get(keys.member("d1"))) is not None and r.lease != record.lease,
            30,
            message="d1 under a new lease",
        )
        wait_until(lambda: actors() == held, 30, message="names under the new lease")
        assert serves()
    assert first.proc.poll() is None
