"""Shared pieces of the fault suite: an etcd of its own and node processes.

Every process a fixture starts is killed when the test ends, also on failure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from taskmesh.cluster import EmbeddedEtcd
from tests.etcd_fixtures import unique_cluster
from tests.integration.node.support import NodeProcess, cli


@pytest.fixture
def etcd() -> Iterator[EmbeddedEtcd]:
    """A separate etcd (not embedded in a node, so a node can be killed)."""
    server = EmbeddedEtcd().start()
    try:
        yield server
    finally:
        server.close()


class Nodes:
    """``taskmesh node`` processes of one cluster; `close` kills them all."""

    def __init__(self, etcd_url: str, cluster: str | None = None) -> None:
        self.etcd_url = etcd_url
        self.cluster = cluster or unique_cluster()
        self.started: list[NodeProcess] = []

    def start(self, name: str, *extra: str, prefix: tuple[str, ...] = ()) -> NodeProcess:
        node = NodeProcess(
            "--etcd", self.etcd_url, "--cluster", self.cluster,
            "--app", "tests.faults.apps:counter", *extra,
            name=name, prefix=prefix,
        )  # fmt: skip
        self.started.append(node)
        return node.wait_ready()

    def members(self) -> list[dict[str, Any]]:
        """``taskmesh members --json`` (a fresh client: etcd's view, not a cache)."""
        done = cli("members", "--json", "--etcd", self.etcd_url, "--cluster", self.cluster)
        assert done.returncode == 0, done.stderr
        rows: list[dict[str, Any]] = json.loads(done.stdout)
        return rows

    def close(self) -> None:
        for node in self.started:
            node.close()


@pytest.fixture
def nodes(etcd: EmbeddedEtcd) -> Iterator[Nodes]:
    group = Nodes(etcd.endpoint)
    try:
        yield group
    finally:
        group.close()
