"""``taskmesh.connect()`` from a plain script: names, capabilities, keys."""

from __future__ import annotations

import uuid

import pytest

import taskmesh
from tests.integration.node.support import running_node


def test_a_client_asks_by_name_and_capability_and_repeats_are_answered_from_memory(
    etcd_url: str,
) -> None:
    cluster = "t" + uuid.uuid4().hex[:8]
    with (
        running_node(
            "--etcd", etcd_url, "--cluster", cluster, "--app", "tests.faults.apps:counter",
            name="kappa",
        ),
        taskmesh.connect(etcd=etcd_url, cluster=cluster) as client,
    ):  # fmt: skip
        first = client.ask("counter-kappa", {"key": "order-42"}, retries=2, idempotency_key="o42")
        again = client.ask("counter-kappa", {"key": "order-42"}, retries=2, idempotency_key="o42")
        assert first == again and first["applied"] == 1
        fresh = client.ask("counter-kappa", {"key": "order-42"}, idempotency_key="o43")
        assert fresh["applied"] == 2
        routed = client.capability("counter").ask({"key": "k"}, timeout=5.0, retries=1)
        assert routed["node"] == "kappa"
        assert sorted(client.members()) == ["kappa"]
        with pytest.raises(taskmesh.ActorNotFound):
            client.ask("nobody", 1, timeout=2.0)
        client.tell("nobody", 1)
        assert client.dead_letters.counts() == {"actor_not_found": 1}
