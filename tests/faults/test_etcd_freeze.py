"""A frozen etcd (SIGSTOP: connections open, no answers) is detected within about the
lease TTL; nodes serve from their caches meanwhile and register again after SIGCONT."""

from __future__ import annotations

import os
import signal
import time

import pytest

import taskmesh
from taskmesh.cluster import EmbeddedEtcd
from tests.faults.conftest import Nodes
from tests.integration.node.support import NodeProcess
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

LEASE_TTL = 3.0
DETECTION_BOUND = LEASE_TTL + 2.0 + 5.0
"""The TTL, one etcd call timeout (2 s), and slack for a loaded machine."""


def noticed(node: NodeProcess) -> bool:
    # One warning when etcd goes (the lease's own line is then a debug line).
    return any("presumed lost" in line or "cannot reach etcd" in line for line in node.stderr)


def test_a_frozen_etcd_is_detected_within_about_the_lease_ttl_and_nodes_serve_meanwhile(
    etcd: EmbeddedEtcd, nodes: Nodes
) -> None:
    a = nodes.start("a")
    b = nodes.start("b")
    pid = etcd.pid
    assert pid is not None
    with taskmesh.connect(etcd=nodes.etcd_url, cluster=nodes.cluster) as client:
        wait_until(lambda: client.resolve("relay-a") and client.resolve("echo-b"), 30)
        os.kill(pid, signal.SIGSTOP)
        try:
            frozen = time.monotonic()
            wait_until(lambda: noticed(a) and noticed(b), DETECTION_BOUND + 10)
            took = time.monotonic() - frozen
            assert took <= DETECTION_BOUND, f"the freeze was noticed only after {took:.1f}s"
            # Served from the caches: node to node, and from the warm client.
            for _ in range(5):
                reply = client.ref("relay-a").ask({"to": "echo-b", "message": 1}, timeout=10.0)
                assert reply == {"echo": 1, "node": "b"}
                assert client.ref("echo-a").ask("x", timeout=10.0) == {"echo": "x", "node": "a"}
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_until(lambda: {m["node"] for m in nodes.members()} == {"a", "b"}, 30)
        wait_until(lambda: sum(m["leader"] for m in nodes.members()) == 1, 30, message="one leader")
        assert client.ref("relay-b").ask({"to": "echo-a", "message": 2}, timeout=10.0) == {
            "echo": 2,
            "node": "a",
        }
