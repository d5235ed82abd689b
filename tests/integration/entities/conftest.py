"""Node processes hosting the test entities (a cluster of their own on the
module's etcd, ``etcd_url``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.etcd_fixtures import unique_cluster
from tests.integration.node.support import NodeProcess, cli

APP = "tests.integration.entities.apps:fleet"


class Fleet:
    """``taskmesh node`` processes hosting the test entities; `close` kills them."""

    def __init__(self, etcd_url: str) -> None:
        self.etcd_url = etcd_url
        self.cluster = unique_cluster()
        self.nodes: dict[str, NodeProcess] = {}

    def start(self, name: str, *extra: str) -> NodeProcess:
        node = NodeProcess(
            "--etcd", self.etcd_url, "--cluster", self.cluster, "--app", APP, *extra, name=name
        )
        self.nodes[name] = node
        return node.wait_ready()

    def entities(self, entity_type: str = "device") -> dict[str, Any]:
        """``taskmesh entities TYPE --json``: the type's row."""
        done = cli(
            "entities", entity_type, "--json", "--etcd", self.etcd_url, "--cluster", self.cluster
        )
        assert done.returncode == 0, done.stderr
        report: dict[str, Any] = json.loads(done.stdout)
        (row,) = report["types"]
        return row

    def shards(self, entity_type: str = "device") -> dict[str, int]:
        """Shards per node that owns any."""
        return {n["node"]: n["shards"] for n in self.entities(entity_type)["nodes"] if n["shards"]}

    def close(self) -> None:
        for node in self.nodes.values():
            node.close()


@pytest.fixture
def fleet(etcd_url: str) -> Iterator[Fleet]:
    group = Fleet(etcd_url)
    try:
        yield group
    finally:
        group.close()
