"""Measure: kill -9 of the node a capability's asks go to -> first answer from another holder.

Run: ``.venv/bin/python benchmarks/failover.py [rounds] [--freeze]`` (default 7 rounds).

Each round starts a separate etcd-backed cluster of two ``taskmesh node``
processes (default settings: lease TTL 3 s, heartbeats as shipped), both
holding the capability ``counter``. A client asks it in a loop with
``consistent_hash`` routing and one fixed key, so every ask goes to the
same node, with ``retries`` and an idempotency key per ask. The benchmark
SIGKILLs that node and reports the time from the kill to the first ask
answered by the other node, and the longest pause between two answers
in the six seconds after the kill.

A kill -9 on a live host makes the kernel reset the node's TCP connections,
so peers know at once. ``--freeze`` SIGSTOPs the node instead: its
connections stay open and silent, as when a host hangs, loses power or is
cut off by the network, and only missed heartbeats (suspicion) or the lease
expiry tell the others.
"""

from __future__ import annotations

import itertools
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.*

import taskmesh
from taskmesh.cluster import EmbeddedEtcd
from tests.etcd_fixtures import unique_cluster, wait_until
from tests.integration.node.support import NodeProcess

AFTER = 6.0
"""Seconds of traffic after the kill in which the longest pause is measured."""


class Asker:
    """Asks ``counter`` with one routing key; records (time, node) per answer."""

    def __init__(self, client: taskmesh.Client) -> None:
        self.counters = client.capability("counter", strategy="consistent_hash")
        self.answers: list[tuple[float, str]] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                reply = self.counters.ask(
                    {"key": f"ask-{n}"},
                    key="fixed",
                    timeout=20.0,
                    retries=30,
                    idempotency_key=f"ask-{n}",
                )
            except BaseException as error:
                self.errors.append(error)
                return
            self.answers.append((time.monotonic(), reply["node"]))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def one_round(etcd: EmbeddedEtcd, round_no: int, phase: float, freeze: bool) -> tuple[float, float]:
    """Return (kill -> first answer by the other holder, longest pause after the kill)."""
    cluster = unique_cluster()
    names = [f"r{round_no}a", f"r{round_no}b"]
    procs = [
        NodeProcess(
            "--etcd",
            etcd.endpoint,
            "--cluster",
            cluster,
            "--app",
            "tests.faults.apps:counter",
            name=name,
        )
        for name in names
    ]
    try:
        for proc in procs:
            proc.wait_ready()
        with taskmesh.connect(etcd=etcd.endpoint, cluster=cluster) as client:
            wait_until(lambda: len(client.routes().get("counter", [])) == 2, 30)
            asker = Asker(client)
            try:
                wait_until(lambda: len(asker.answers) >= 50, 30)
                target = asker.answers[-1][1]
                victim = procs[names.index(target)]
                time.sleep(phase)  # vary the kill's moment against heartbeats and lease refresh
                killed = time.monotonic()
                victim.proc.send_signal(signal.SIGSTOP if freeze else signal.SIGKILL)
                wait_until(
                    lambda: (
                        any(t > killed and n != target for t, n in asker.answers[-50:])
                        or asker.errors
                    ),
                    30,
                )
                first = next(t for t, n in asker.answers if t > killed and n != target)
                wait_until(lambda: time.monotonic() > killed + AFTER or asker.errors, AFTER + 5)
            finally:
                asker.stop()
            if asker.errors:
                raise asker.errors[0]
            times = [killed] + [t for t, _ in asker.answers if killed < t <= killed + AFTER]
            pause = max(b - a for a, b in itertools.pairwise(times))
            return first - killed, pause
    finally:
        for proc in procs:
            proc.close()


def main(rounds: int, freeze: bool) -> None:
    firsts: list[float] = []
    pauses: list[float] = []
    with EmbeddedEtcd() as etcd:
        for i in range(rounds):
            first, pause = one_round(etcd, i, 0.1 + (i % 5) * 0.2, freeze)
            firsts.append(first)
            pauses.append(pause)
            print(f"round {i + 1}: first answer by another holder {first * 1000:.0f} ms, "
                  f"longest pause {pause * 1000:.0f} ms", flush=True)  # fmt: skip
    fault = "SIGSTOP (frozen, no TCP reset)" if freeze else "kill -9"
    print(
        f"{fault} -> first answer by another holder: median {statistics.median(firsts):.3f} s, "
        f"worst {max(firsts):.3f} s ({rounds} rounds); longest pause between answers: "
        f"median {statistics.median(pauses):.3f} s, worst {max(pauses):.3f} s"
    )


if __name__ == "__main__":
    numbers = [arg for arg in sys.argv[1:] if arg.isdigit()]
    main(int(numbers[0]) if numbers else 7, "--freeze" in sys.argv[1:])
