"""A full entity mailbox slows its sender down, as a named actor's does.

A ``taskmesh node`` process hosts ``slow`` entities (about 1 ms a message)
with 50-message mailboxes; a client on another process tells one of them
far more than that as fast as it can. Every tell arrives, in order, and
none is a dead letter: the node keeps what the mailbox cannot take and
withholds the sender's credit until there is room.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import taskmesh
from tests.etcd_fixtures import unique_cluster
from tests.integration.node.support import NodeProcess, cli
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

TELLS = 3_000


def test_a_full_entity_mailbox_slows_the_sender_and_loses_nothing(
    etcd_url: str, tmp_path: Path
) -> None:
    cluster = unique_cluster()
    config = tmp_path / "node.toml"
    config.write_text("[taskmesh]\nmailbox-size = 50\n")
    node = NodeProcess(
        "--etcd", etcd_url, "--cluster", cluster, "--config", str(config),
        "--app", "tests.integration.entities.apps:slow", name="flow-1",
    )  # fmt: skip
    try:
        node.wait_ready()
        with taskmesh.connect(etcd=etcd_url, cluster=cluster) as client:
            entity = client.entity("slow", "s-1")
            assert entity.ask("count", timeout=30.0, retries=20) == {
                "count": 0,
                "out_of_order": 0,
            }
            for n in range(TELLS):
                entity.tell(n)  # waits for credit when the node holds back
            wait_until(
                lambda: entity.ask("count", timeout=30.0)["count"] >= TELLS,
                120,
                message="every tell handled",
            )
            assert entity.ask("count", timeout=30.0) == {"count": TELLS, "out_of_order": 0}
        done = cli("dead-letters", "--etcd", etcd_url, "--cluster", cluster, "--json")
        assert done.returncode == 0, done.stderr
        assert "mailbox_full" not in done.stdout, done.stdout
        assert node.terminate() == 0
    finally:
        node.close()
