"""etcd stopped for 10 seconds under load: known nodes keep talking, then re-register."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import taskmesh
from taskmesh.cluster import EmbeddedEtcd
from tests.faults.conftest import Nodes
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

OUTAGE = 10.0


def test_known_nodes_keep_talking_while_etcd_is_down_and_membership_recovers_after(
    etcd: EmbeddedEtcd, nodes: Nodes
) -> None:
    nodes.start("a")
    nodes.start("b")
    client = taskmesh.connect(etcd=nodes.etcd_url, cluster=nodes.cluster)
    answers: list[tuple[float, Any]] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    # By name from the client, and node to node: relay-a asks echo-b from node a.
    calls = [
        ("echo-a", "x", {"echo": "x", "node": "a"}),
        ("echo-b", "y", {"echo": "y", "node": "b"}),
        ("relay-a", {"to": "echo-b", "message": 1}, {"echo": 1, "node": "b"}),
        ("relay-b", {"to": "echo-a", "message": 2}, {"echo": 2, "node": "a"}),
    ]

    def load() -> None:
        try:
            while not stop.is_set():
                for name, message, expected in calls:
                    reply = client.ref(name).ask(message, timeout=10.0)
                    assert reply == expected, (name, reply)
                    answers.append((time.monotonic(), reply))
        except BaseException as error:  # reported by the test thread
            errors.append(error)

    worker = threading.Thread(target=load, daemon=True)
    try:
        wait_until(
            lambda: all(client.resolve(name) for name, _, _ in calls),
            30,
            message="the names in the client's cache",
        )
        worker.start()
        wait_until(lambda: len(answers) >= 20 or errors, 30, message="traffic before the outage")
        etcd.stop()
        down_since = time.monotonic()
        # The outage lasts OUTAGE seconds of traffic; fail early on an error.
        wait_until(
            lambda: errors or time.monotonic() - down_since >= OUTAGE,
            OUTAGE + 5,
            message="the outage",
        )
        during = [a for at, a in answers if at > down_since]
        assert not errors, errors
        assert len(during) >= 20, f"only {len(during)} answers while etcd was down"
        assert {a["node"] for a in during} == {"a", "b"}
        etcd.start()
        wait_until(
            lambda: {m["node"] for m in nodes.members()} == {"a", "b"},
            30,
            message="both nodes registered again",
        )
        # A fresh client (an empty cache) finds the re-claimed names.
        with taskmesh.connect(etcd=nodes.etcd_url, cluster=nodes.cluster) as fresh:
            wait_until(lambda: fresh.resolve("echo-b"), 30, message="echo-b re-claimed")
            assert fresh.ref("echo-b").ask("z", timeout=10.0) == {"echo": "z", "node": "b"}
            assert fresh.ref("relay-b").ask({"to": "echo-a", "message": 3}, timeout=10.0) == {
                "echo": 3,
                "node": "a",
            }
        assert not errors, errors
    finally:
        stop.set()
        worker.join(30)
        client.close()
