"""A keyed ask an activation never got to is handed on with its key.

Two ``taskmesh node`` processes host ``ledger`` entities. One entity on the
first node is stuck in an ``await``; an ask with an idempotency key waits in
its mailbox behind it. The node is stopped: its shards move, the stuck
activation does not passivate within the 10 s handoff timeout, so its
receive is cancelled (it used to keep the shard until the node's grace
period ran out) and what its mailbox held goes to the shard's next owner.
A retry of the ask with the same key, at that owner, gets the answer of the
one run instead of running it again (it used to arrive without its key).
"""

from __future__ import annotations

import contextlib
import urllib.request

import pytest

import taskmesh
from tests.etcd_fixtures import unique_cluster
from tests.integration.node.support import NodeProcess
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

APP = "tests.integration.entities.apps:ledger"


def _messages_in(node: NodeProcess) -> float:
    with urllib.request.urlopen(node.metrics + "/metrics", timeout=10) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith("taskmesh_messages_in_total "):
                return float(line.split()[1])
    raise AssertionError("taskmesh_messages_in_total not in the node's metrics")


def test_a_keyed_ask_handed_on_by_a_forced_handoff_runs_once(etcd_url: str) -> None:
    cluster = unique_cluster()
    common = ("--etcd", etcd_url, "--cluster", cluster, "--app", APP, "--metrics-port", "0")
    # A grace period far longer than the 10 s handoff timeout: the stop
    # waits for the stuck activation to be stopped and its mailbox handed on.
    first = NodeProcess(*common, "--grace-period", "300", name="ledger-1")
    second = NodeProcess(*common, name="ledger-2")
    try:
        first.wait_ready()
        second.wait_ready()
        with taskmesh.connect(etcd=etcd_url, cluster=cluster) as client:
            where: dict[str, str] = {}

            def one_on_each() -> bool:
                entity_id = f"l-{len(where)}"
                answer = client.entity("ledger", entity_id).ask("get", timeout=30, retries=10)
                where[entity_id] = answer["node"]
                return {"ledger-1", "ledger-2"} <= set(where.values())

            wait_until(one_on_each, 120, message="entities answered from both nodes")
            stuck_id = next(i for i, node in where.items() if node == "ledger-1")
            entity = client.entity("ledger", stuck_id)

            before = _messages_in(first)
            entity.tell("block")
            pending = entity.ask_async("add", timeout=120, idempotency_key="pay-1")
            wait_until(
                lambda: _messages_in(first) >= before + 2,
                60,
                message="the block and the keyed ask reached the first node",
            )
            first.proc.terminate()  # SIGTERM: drain, then stop
            # Done once the stuck receive was cut short at the handoff
            # timeout and the shard moved, not at the end of the grace period.
            assert first.proc.wait(120) == 0, first.stderr
            # The first try's answer went to the stopped node (or never
            # came): the caller retries with the same key, as it should.
            again = entity.ask("add", timeout=30, retries=20, idempotency_key="pay-1")
            assert again == {"node": "ledger-2", "runs": 1}
            with contextlib.suppress(taskmesh.TaskmeshError):  # unanswered, or:
                assert pending.get(0) == again  # answered by the one run too
            assert entity.ask("get", timeout=30, retries=10) == {"node": "ledger-2", "runs": 1}
    finally:
        first.close()
        second.close()
