"""Cluster-named spawns per second on one node: one by one, and with ``spawn_many``.

    python benchmarks/spawns.py [--actors 5000]

Starts a node with an embedded etcd and spawns ``--actors`` named actors
with a capability each, three ways in one run:

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
    with taskmesh.Node(cluster="spawns") as node:
        member = node.member
        assert member is not None

        def loop(prefix: str) -> None:
            for i in range(n):
                node.spawn(Sensor, name=f"{prefix}{i}")

        def loop_light(prefix: str) -> None:
            for i in range(n):
                node.spawn(LightSensor, name=f"{prefix}{i}")

        def threaded(prefix: str) -> None:
            def part(k: int) -> None:
                for i in range(k, n, 8):
                    node.spawn(Sensor, name=f"{prefix}{i}")

            threads = [threading.Thread(target=part, args=(k,)) for k in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        def stop_all() -> None:
            for name in node.system.names():
                if not name.startswith("_"):
                    node.system._cells[name].stop_and_wait(10)

        rows.append(("spawn, one by one", rate(n, lambda: loop("a"))))
        stop_all()
        rows.append(("spawn, 8 threads", rate(n, lambda: threaded("b"))))
        stop_all()
        rows.append(
            ("spawn_many", rate(n, lambda: node.spawn_many(Sensor, [f"c{i}" for i in range(n)])))
        )
        stop_all()
        rows.append(("spawn, one by one, async actors", rate(n, lambda: loop_light("e"))))
        stop_all()
        rows.append(
            (
                "spawn_many, async actors",
                rate(n, lambda: node.spawn_many(LightSensor, [f"f{i}" for i in range(n)])),
            )
        )
        stop_all()
        names = [f"d{i}" for i in range(n)]
        rows.append(
            (
                "register_many only (internal: etcd part, no actors)",
                rate(n, lambda: member.register_many(names, capabilities=["sensor"])),
            )
        )
    base = rows[0][1]
    print(f"{'way':<55} {'actors/s':>10} {'ratio':>7}")
    for label, value in rows:
        print(f"{label:<55} {value:>10,.0f} {value / base:>6.1f}x")


if __name__ == "__main__":
    main()
