"""Cluster-named spawns per second on one node: one by one, and with ``spawn_many``.

    python benchmarks/spawns.py [--actors 5000]

Starts a node with an embedded etcd (a fresh one per row) and spawns
``--actors`` named actors with a capability each, several ways in one run:

- ``spawn`` in a loop (one etcd round trip per name, the public default);
- ``spawn`` from 8 threads (concurrent claims share transactions);
- ``spawn_many`` (one transaction per 64 names);
- ``spawn`` one by one and ``spawn_many`` again with async actors (no
  thread each: what is left is the etcd part).

It also times the cluster registration alone (`ClusterMember.register_many`,
an internal-level row, labelled so), which shows what etcd costs apart from
starting the actors themselves (one thread each for a threaded actor).
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

import taskmesh


class Sensor(taskmesh.Actor):
    capabilities = ("sensor",)

    def receive(self, message: Any) -> Any:
        return message


class LightSensor(taskmesh.Actor):
    """An async actor: no thread of its own, so starting one costs little."""

    capabilities = ("sensor",)

    async def receive(self, message: Any) -> Any:
        return message


def rate(count: int, fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--actors", type=int, default=5000)
    n = parser.parse_args().actors
    rows: list[tuple[str, float]] = []

    def measure(label: str, run: Any) -> None:
        # A fresh node (and embedded etcd) per row: what one row left behind
        # (thousands of names, their history) does not slow the next.
        with taskmesh.Node(cluster="spawns") as node:
            rows.append((label, rate(n, lambda: run(node))))

    def loop(node: taskmesh.Node, actor: type[taskmesh.Actor]) -> None:
        for i in range(n):
            node.spawn(actor, name=f"a{i}")

    def threaded(node: taskmesh.Node) -> None:
        def part(k: int) -> None:
            for i in range(k, n, 8):
                node.spawn(Sensor, name=f"b{i}")

        threads = [threading.Thread(target=part, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def register_only(node: taskmesh.Node) -> None:
        member = node.member
        assert member is not None
        member.register_many([f"d{i}" for i in range(n)], capabilities=["sensor"])

    names = [f"c{i}" for i in range(n)]
    measure("spawn, one by one", lambda node: loop(node, Sensor))
    measure("spawn, 8 threads", threaded)
    measure("spawn_many", lambda node: node.spawn_many(Sensor, names))
    measure("spawn, one by one, async actors", lambda node: loop(node, LightSensor))
    measure("spawn_many, async actors", lambda node: node.spawn_many(LightSensor, names))
    measure("register_many only (internal: etcd part, no actors)", register_only)
    base = rows[0][1]
    print(f"{'way':<55} {'actors/s':>10} {'ratio':>7}")
    for label, value in rows:
        print(f"{label:<55} {value:>10,.0f} {value / base:>6.1f}x")


if __name__ == "__main__":
    main()
