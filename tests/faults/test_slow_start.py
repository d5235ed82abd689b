"""Twenty nodes started at once on a machine whose cores are both busy all become ready.

On a swamped machine a node's first lease may lapse before its ``--app``
code runs; the node must grant a new one, register again and let the
app's spawns wait for it, not exit.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.faults.conftest import Nodes
from tests.integration.node.support import NodeProcess

pytestmark = pytest.mark.integration

NODES = 20


@contextlib.contextmanager
def busy_cores(count: int = 2) -> Iterator[None]:
    """``count`` processes that spin on a core each until the block ends."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait(30)


def test_twenty_nodes_started_at_once_under_cpu_load_all_become_ready(nodes: Nodes) -> None:
    # The default 15 s for etcd's first answers is for a machine that is
    # merely slow; this one is starved on purpose (and shared with the suite).
    flags = ("--etcd", nodes.etcd_url, "--cluster", nodes.cluster, "--start-timeout", "120")
    with busy_cores():
        started = [
            NodeProcess(*flags, "--app", "tests.faults.apps:counter", name=f"s{i:02d}")
            for i in range(NODES)
        ]
        nodes.started += started
        for node in started:
            node.wait_ready(timeout=240)
        assert all(node.proc.poll() is None for node in started)
    members = {m["node"] for m in nodes.members()}
    assert members == {f"s{i:02d}" for i in range(NODES)}
