"""A full entity mailbox slows its sender down, as a named actor's does.

A ``taskmesh node`` process hosts ``slow`` entities (about 1 ms a message)
with 50-message mailboxes; a client on another process tells one of them
far more than that as fast as it can. Every tell arrives, in order, and
none is a dead letter: the node keeps what the mailbox cannot take and
withholds the sender's credit until there is room. Asks with an
idempotency key are kept the same way (not refused with ``MailboxFull``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import taskmesh
from tests.etcd_fixtures import unique_cluster
from tests.integration.node.support import NodeProcess, cli
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

TELLS = 3_000
KEYED = 600


@pytest.fixture
def slow_node(etcd_url: str, tmp_path: Path) -> Iterator[tuple[str, NodeProcess]]:
    """A node process hosting ``slow`` entities with 50-message mailboxes."""
    cluster = unique_cluster()
    config = tmp_path / "node.toml"
    config.write_text("[taskmesh]\nmailbox-size = 50\n")
    node = NodeProcess(
        "--etcd", etcd_url, "--cluster", cluster, "--config", str(config),
        "--app", "tests.integration.entities.apps:slow", name="flow-1",
    )  # fmt: skip
    try:
        node.wait_ready()
        yield cluster, node
        assert node.terminate() == 0
    finally:
        node.close()


def _no_mailbox_full(etcd_url: str, cluster: str) -> None:
    done = cli("dead-letters", "--etcd", etcd_url, "--cluster", cluster, "--json")
    assert done.returncode == 0, done.stderr
    assert "mailbox_full" not in done.stdout, done.stdout


def test_a_full_entity_mailbox_slows_the_sender_and_loses_nothing(
    etcd_url: str, slow_node: tuple[str, NodeProcess]
) -> None:
    cluster, _ = slow_node
    with taskmesh.connect(etcd=etcd_url, cluster=cluster) as client:
        entity = client.entity("slow", "s-1")
        assert entity.ask("count", timeout=30.0, retries=20) == {"count": 0, "out_of_order": 0}
        for n in range(TELLS):
            entity.tell(n)  # waits for credit when the node holds back
        wait_until(
            lambda: entity.ask("count", timeout=30.0)["count"] >= TELLS,
            120,
            message="every tell handled",
        )
        assert entity.ask("count", timeout=30.0) == {"count": TELLS, "out_of_order": 0}
    _no_mailbox_full(etcd_url, cluster)


def test_keyed_asks_to_a_full_entity_wait_for_room_and_run_once(
    etcd_url: str, slow_node: tuple[str, NodeProcess]
) -> None:
    cluster, _ = slow_node
    with taskmesh.connect(etcd=etcd_url, cluster=cluster) as client:
        entity = client.entity("slow", "k-1")
        assert entity.ask("count", timeout=30.0, retries=20) == {"count": 0, "out_of_order": 0}
        # All in flight at once: far more than the mailbox holds.
        replies = [
            entity.ask_async(n, timeout=120.0, idempotency_key=f"k-{n}") for n in range(KEYED)
        ]
        for reply in replies:
            assert reply.get(150.0) is None  # not MailboxFull
        # A repeat of a key is answered from memory, not run again.
        assert entity.ask(0, timeout=30.0, idempotency_key="k-0") is None
        assert entity.ask("count", timeout=30.0) == {"count": KEYED, "out_of_order": 0}
    _no_mailbox_full(etcd_url, cluster)
