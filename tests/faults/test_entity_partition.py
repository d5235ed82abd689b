"""Sharded entities across a network partition (nodes in network namespaces).

Three nodes in their own namespaces (``tests/faults/netns.py``) host
``device`` entities whose state is in etcd; etcd and the client stay in the
root namespace. While client threads keep asking entities to record
sequence numbers, the node owning the most shards is cut off: it reaches
neither etcd nor the other nodes, and its process keeps running. Its lease
runs out, its shards move to the other two, and the asks (with retries)
are answered there. Then the link comes back and it takes shards again.
The checker (``tests/faults/entity_traffic.py``) asserts that no entity id
had two activations whose lives overlap, on either side of the cut, and
that every acknowledged sequence number is in the saved state, once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import taskmesh
from taskmesh.cluster import EmbeddedEtcd
from tests.faults.conftest import Nodes
from tests.faults.entity_traffic import Traffic, check_records, finish
from tests.faults.netns import Lab, lab
from tests.integration.entities.conftest import APP
from tests.integration.node.support import cli
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

HOSTS = ["a", "b", "c"]


@pytest.fixture
def network() -> Iterator[Lab]:
    with lab(HOSTS) as made:
        yield made


def shards(etcd_url: str, cluster: str) -> dict[str, int]:
    """Shards of ``device`` per node that owns any (``taskmesh entities``)."""
    done = cli("entities", "device", "--json", "--etcd", etcd_url, "--cluster", cluster)
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)["types"]
    return {n["node"]: n["shards"] for n in row["nodes"] if n["shards"]}


def test_an_isolated_nodes_entities_move_and_none_is_active_twice(
    network: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = tmp_path / "records"
    monkeypatch.setenv("TM_ENTITY_RECORDS", str(records))
    monkeypatch.delenv("TM_ENTITY_PG", raising=False)  # state in etcd
    etcd = EmbeddedEtcd(host=network.gateway).start()
    group = Nodes(etcd.endpoint)
    client: taskmesh.Client | None = None
    traffic: Traffic | None = None
    isolated = ""
    try:
        for host in HOSTS:
            group.start(
                host,
                "--app", APP, "--listen", f"tcp://{network.hosts[host]}:0",
                prefix=tuple(network.exec_prefix(host)),
            )  # fmt: skip
        wait_until(
            lambda: set(shards(etcd.endpoint, group.cluster)) == set(HOSTS),
            60,
            message="shards on all three nodes",
        )
        client = taskmesh.connect(etcd=etcd.endpoint, cluster=group.cluster)
        traffic = Traffic(client)
        traffic.start()
        traffic.more(40)

        owned = shards(etcd.endpoint, group.cluster)
        isolated = max(owned, key=lambda node: owned[node])
        network.partition(isolated)
        # Its lease runs out, its shards move to the majority side, and the
        # asks that went to it are answered there (retries).
        wait_until(
            lambda: isolated not in shards(etcd.endpoint, group.cluster),
            60,
            message=f"{isolated}'s shards to move",
        )
        traffic.more(40)

        network.heal(isolated)
        wait_until(
            lambda: isolated in {m["node"] for m in group.members()},
            60,
            message=f"{isolated} back in `taskmesh members`",
        )
        wait_until(
            lambda: isolated in shards(etcd.endpoint, group.cluster),
            90,
            message=f"{isolated} owning shards again",
        )
        finish(client, traffic)
    finally:
        if traffic is not None:
            traffic.stop()
        if client is not None:
            client.close()
        group.close()
        etcd.close()
    check_records(records)
    assert moved(records, isolated), f"no entity of {isolated} was activated elsewhere"


def moved(records: Path, node: str) -> set[str]:
    """Ids activated on ``node`` and later on another node."""
    first: dict[str, float] = {}
    found = set()
    for line in records.read_text().splitlines():
        kind, entity_id, where, _, stamp = line.split()
        if kind != "A":
            continue
        if where == node:
            first.setdefault(entity_id, float(stamp))
        elif entity_id in first and float(stamp) > first[entity_id]:
            found.add(entity_id)
    return found
