"""Stopping named async actors: the event loop never waits for etcd.

    python benchmarks/releases.py [--actors 5000]

Starts a node with an embedded etcd and, in one run:

- spawns ``--actors`` named async actors with ``spawn_many`` and stops them
  one by one with ``ref.stop()`` (each returns once its name is free in the
  cluster; the releaser thread withdraws what ended meanwhile together);
- freezes etcd (SIGSTOP) and stops one more async actor while another
  thread asks a probe actor on the same event loop over and over: the
  slowest probe ask is what a stop during an etcd outage costs every other
  async actor of the node (before: the etcd timeout, 2 s).
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from typing import Any

import taskmesh


class Light(taskmesh.Actor):
    capabilities = ("light",)

    async def receive(self, message: Any) -> Any:
        return message


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--actors", type=int, default=5000)
    n = parser.parse_args().actors
    with taskmesh.Node(cluster="releases") as node:
        refs = node.spawn_many(Light, [f"light-{i}" for i in range(n)])
        started = time.perf_counter()
        for ref in refs:
            ref.stop()
        stopped = time.perf_counter() - started
        print(f"{n} async actors stopped one by one: {stopped:.2f} s ({n / stopped:,.0f}/s)")

        probe = node.spawn(Light, name="probe")
        victim = node.spawn(Light, name="victim")
        worst = 0.0
        done = threading.Event()

        def ask_probe() -> None:
            nonlocal worst
            while not done.is_set():
                t = time.perf_counter()
                probe.ask(1, timeout=60)
                worst = max(worst, time.perf_counter() - t)

        pid = node.embedded_etcd.pid if node.embedded_etcd is not None else None
        assert pid is not None
        asker = threading.Thread(target=ask_probe)
        asker.start()
        os.kill(pid, signal.SIGSTOP)
        try:
            t = time.perf_counter()
            victim.stop()
            took = time.perf_counter() - t
        finally:
            os.kill(pid, signal.SIGCONT)
            done.set()
            asker.join()
        print(f"one stop with etcd frozen: ref.stop() returned after {took:.2f} s")
        print(f"slowest ask to another async actor meanwhile: {worst * 1000:.1f} ms")


if __name__ == "__main__":
    main()
