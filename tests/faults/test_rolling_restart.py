"""A rolling restart at new addresses (a StatefulSet rollout, or any node on
port 0): every node in turn is killed and comes back under its name at
another port, while a client asks with retries. Nothing fails, and each
restarted node is used again at its new address."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import taskmesh
from tests.faults.conftest import Nodes
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

NAMES = ("r1", "r2", "r3")


class Asker:
    """One client thread asking the ``counter`` capability with retries and keys."""

    def __init__(self, client: taskmesh.Client) -> None:
        self.counters = client.capability("counter")
        self.answered_by: list[str] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            key = f"roll-{n}"
            try:
                reply: dict[str, Any] = self.counters.ask(
                    {"key": key}, timeout=20.0, retries=40, idempotency_key=key
                )
            except BaseException as error:  # reported by the test thread
                self.errors.append(error)
                return
            self.answered_by.append(str(reply["node"]))

    def count(self) -> int:
        return len(self.answered_by)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)


def test_a_rolling_restart_at_new_addresses_loses_no_ask_and_every_node_serves_again(
    nodes: Nodes,
) -> None:
    running = {name: nodes.start(name) for name in NAMES}
    with taskmesh.connect(etcd=nodes.etcd_url, cluster=nodes.cluster) as client:
        wait_until(lambda: len(client.routes().get("counter", [])) == 3, 30, message="3 holders")
        asker = Asker(client)
        try:
            wait_until(lambda: asker.count() > 20 or asker.errors, 30, message="traffic")
            for name in NAMES:
                old = running[name]
                old_address = old.address
                old.proc.kill()  # SIGKILL: no drain, no deregistration
                old.proc.wait(30)
                running[name] = nodes.start(name)  # port 0: somewhere else
                assert running[name].address != old_address

                # Only capability traffic: nothing but the route table leads the
                # client to the new address (asking by name would open the link).
                seen = asker.count()
                wait_until(
                    lambda seen=seen, name=name: name in asker.answered_by[seen:] or asker.errors,
                    30,
                    message=f"{name} serving at its new address",
                )
                assert client.reachable(name)
            # After the rollout the client spreads over all three again.
            mark = asker.count()
            wait_until(
                lambda: set(asker.answered_by[mark:]) == set(NAMES) or asker.errors,
                30,
                message="answers from every restarted node",
            )
        finally:
            asker.stop()
        assert asker.errors == []
