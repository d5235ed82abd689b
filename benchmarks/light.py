"""Light actors: how many idle async actors one actor system holds, and what
spawning and stopping them costs, against threaded actors and bare pykka.

Run:  python benchmarks/light.py [--actors N] [--threaded N] [--rounds R]

Targets (issue 12, on a 2-core machine): 100,000 idle async actors, at
most 2 KiB of RSS each, spawned at 20,000 actors/s or more, all stopped in
5 s or less; the process's thread count stays flat as they are added. And
issue 10: ``spawn`` of a threaded actor at least as fast as bare pykka's
``start``.

RSS per actor is (RSS with the actors - RSS before them) / N, measured in
this process after a garbage collection; the baseline is the same actor
system with its event loop running and no actors. Spawn rate is through
the public ``ActorSystem.spawn``; the stop time is ``ActorSystem.stop()``
with every actor alive (each one's ``on_stop`` runs, last spawned first).
Threaded actors and pykka actors are measured with fewer actors (a thread
each), interleaved round by round.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import threading
import time
from typing import Any

import psutil
import pykka

import taskmesh


class Idle(taskmesh.Actor):
    """An async actor that holds a little state and waits."""

    def __init__(self, n: int) -> None:
        self.n = n

    async def receive(self, message: Any) -> Any:
        return self.n


class IdleThreaded(taskmesh.Actor):
    def __init__(self, n: int) -> None:
        self.n = n

    def receive(self, message: Any) -> Any:
        return self.n


class IdlePykka(pykka.ThreadingActor):  # type: ignore[misc]
    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def on_receive(self, message: Any) -> Any:
        return self.n


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def light(n: int) -> dict[str, float]:
    """Spawn ``n`` idle async actors, measure, stop them."""
    system = taskmesh.ActorSystem(mailbox_size=1_000)
    system.spawn(Idle, 0, name="warm-up").ask("x", timeout=30)  # starts the loop
    system.stop_actor("warm-up")
    threads = threading.active_count()
    before = rss()
    start = time.perf_counter()
    refs = [system.spawn(Idle, i) for i in range(n)]
    spawned = time.perf_counter() - start
    assert refs[-1].ask("x", timeout=60) == n - 1  # every start ran: they run in order
    after = rss()
    added_threads = threading.active_count() - threads
    start = time.perf_counter()
    system.stop()
    stopped = time.perf_counter() - start
    del refs
    return {
        "spawn/s": n / spawned,
        "rss/actor": (after - before) / n,
        "stop s": stopped,
        "threads": added_threads,
    }


def threaded_spawns(n: int) -> tuple[float, float]:
    """Spawns per second: taskmesh threaded actors, then bare pykka."""
    system = taskmesh.ActorSystem()
    start = time.perf_counter()
    refs = [system.spawn(IdleThreaded, i) for i in range(n)]
    taskmesh_rate = n / (time.perf_counter() - start)
    refs[-1].ask("x", timeout=60)
    system.stop()
    start = time.perf_counter()
    prefs = [IdlePykka.start(i) for i in range(n)]
    pykka_rate = n / (time.perf_counter() - start)
    prefs[-1].ask("x", timeout=60)
    pykka.ActorRegistry.stop_all()
    return taskmesh_rate, pykka_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--actors", type=int, default=100_000)
    parser.add_argument("--threaded", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()

    rows: dict[str, list[float]] = {}
    spawn_ratio: list[tuple[float, float]] = []
    for _ in range(opts.rounds):
        for key, value in light(opts.actors).items():
            rows.setdefault(key, []).append(value)
        spawn_ratio.append(threaded_spawns(opts.threaded))

    med = {key: statistics.median(values) for key, values in rows.items()}
    print(f"{opts.actors:,} idle async actors (median of {opts.rounds} rounds):")
    print(f"  spawn            {med['spawn/s']:>12,.0f} actors/s   (target >= 20,000)")
    print(f"  RSS per actor    {med['rss/actor']:>12,.0f} bytes      (target <= 2,048)")
    print(f"  stop them all    {med['stop s']:>12.2f} s          (target <= 5)")
    print(f"  threads added    {med['threads']:>12.0f}")
    tm = statistics.median(r[0] for r in spawn_ratio)
    pk = statistics.median(r[1] for r in spawn_ratio)
    print(f"{opts.threaded:,} threaded actors, spawn/s:")
    print(f"  bare pykka {pk:>10,.0f}   taskmesh {tm:>10,.0f}   ratio {tm / pk:.2f} (target >= 1)")


if __name__ == "__main__":
    main()
