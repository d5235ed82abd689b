"""A network partition: three nodes in their own network namespaces, one cut off.

The lab (``tests/faults/netns.py``) puts each node in a namespace with its
own address on a bridge; etcd and the client stay in the root namespace
and reach the nodes over the bridge. Taking one host's link down cuts it
off from etcd and from the other nodes, while its process keeps running.
Needs root (CI runs as root): if namespaces cannot be made, the test fails.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import taskmesh
from taskmesh.cluster import EmbeddedEtcd
from tests.faults.conftest import Nodes
from tests.faults.netns import Lab, lab
from tests.integration.node.support import NodeProcess
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

HOSTS = ["a", "b", "c"]
ELECTED = "elected leader"
DEMOTED = "is no longer the leader"


@pytest.fixture
def network() -> Iterator[Lab]:
    with lab(HOSTS) as made:
        yield made


def leadership(node: NodeProcess) -> str | None:
    """What the node's own log last said about leading: ELECTED, DEMOTED or None."""
    for line in reversed(list(node.stderr)):
        if f"node {node.name} {DEMOTED}" in line:
            return DEMOTED
        if f"node {node.name} {ELECTED}" in line:
            return ELECTED
    return None


def believers(nodes: dict[str, NodeProcess]) -> set[str]:
    return {name for name, node in nodes.items() if leadership(node) == ELECTED}


class Asker:
    """A client thread asking the ``counter`` capability (round robin, with retries)."""

    def __init__(self, client: taskmesh.Client) -> None:
        self.counters = client.capability("counter")
        self.answers: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                key = f"p{n}"
                reply = self.counters.ask(
                    {"key": key}, timeout=20.0, retries=30, idempotency_key=key
                )
            except BaseException as error:  # reported by the test thread
                self.errors.append(error)
                return
            self.answers.append(reply)

    def wait_for(self, more: int, *, exclude: str | None = None) -> list[dict[str, Any]]:
        """Wait for ``more`` further answers (from nodes other than ``exclude``)."""
        seen = len(self.answers)

        def fresh() -> list[dict[str, Any]]:
            return [a for a in self.answers[seen:] if a["node"] != exclude]

        wait_until(lambda: len(fresh()) >= more or self.errors, 60, message=f"{more} answers")
        assert not self.errors, self.errors
        return self.answers[seen:]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)


def test_an_isolated_node_is_routed_around_leads_no_more_and_rejoins_after_heal(
    network: Lab,
) -> None:
    etcd = EmbeddedEtcd(host=network.gateway).start()
    group = Nodes(etcd.endpoint)
    client: taskmesh.Client | None = None
    asker: Asker | None = None
    try:
        nodes = {
            host: group.start(
                host,
                "--listen", f"tcp://{network.hosts[host]}:0",
                prefix=tuple(network.exec_prefix(host)),
            )
            for host in HOSTS
        }  # fmt: skip
        client = taskmesh.connect(etcd=etcd.endpoint, cluster=group.cluster)
        wait_until(
            lambda: len(client.routes().get("counter", [])) == 3 and client.leader(),
            30,
            message="three counter holders and a leader",
        )
        asker = Asker(client)
        asker.start()
        assert {a["node"] for a in asker.wait_for(30)} == set(HOSTS)

        # Cut off the leader: the case where stepping down matters.
        isolated = client.leader()
        assert isolated in nodes
        others = {h: n for h, n in nodes.items() if h != isolated}
        wait_until(lambda: believers(nodes) == {isolated}, 30, message="the leader's log line")
        network.partition(isolated)

        # Routed around: asks keep being answered, and then only by the others.
        wait_until(
            lambda: client.leader() not in (None, isolated),
            30,
            message="a new leader on the majority side",
        )
        wait_until(
            lambda: isolated not in {r.node for r in client.routes().get("counter", [])},
            30,
            message="the isolated node out of the routing table",
        )
        answered = asker.wait_for(40, exclude=isolated)
        late = answered[-20:]
        assert {a["node"] for a in late} == set(others), late

        # At most one leader acts: the cut-off node stepped down (its lease
        # is gone, so it cannot write), and exactly the new leader believes it leads.
        wait_until(
            lambda: leadership(nodes[isolated]) == DEMOTED,
            30,
            message=f"{isolated} logging that it is no longer the leader",
        )
        new_leader = client.leader()
        wait_until(
            lambda: believers(nodes) == {new_leader},
            30,
            message=f"only {new_leader} believing it leads",
        )

        network.heal(isolated)
        wait_until(
            lambda: {m["node"] for m in group.members()} == set(HOSTS),
            60,
            message=f"{isolated} back in `taskmesh members`",
        )
        wait_until(
            lambda: client.resolve(f"echo-{isolated}") is not None,
            60,
            message=f"echo-{isolated} claimed again",
        )
        reply = client.ref(f"echo-{isolated}").ask("back", timeout=20.0, retries=10)
        assert reply == {"echo": "back", "node": isolated}
        wait_until(
            lambda: isolated in {a["node"] for a in asker.wait_for(6)},
            60,
            message=f"capability asks reaching {isolated} again",
        )
        assert believers(nodes) == {new_leader} and client.leader() == new_leader
        assert not asker.errors, asker.errors
    finally:
        if asker is not None:
            asker.stop()
        if client is not None:
            client.close()
        group.close()
        etcd.close()
