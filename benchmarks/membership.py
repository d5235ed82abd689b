"""Measure: SIGKILL of a member process -> its leave in every other member's view.

Run: ``.venv/bin/python benchmarks/membership.py [rounds]``.
Default settings (lease TTL 3 s). Three in-process observers; the time is
taken from os.kill to each observer's leave event (members watch thread).
"""

from __future__ import annotations

import signal
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.etcd_fixtures

from taskmesh.cluster import ClusterMember, ClusterSettings, EmbeddedEtcd, MemberEvent
from tests.etcd_fixtures import child_member, unique_cluster, wait_until


def one_kill(etcd: EmbeddedEtcd, phase: float) -> list[float]:
    """Kill one member; return each observer's delay until it saw the leave."""
    cluster = unique_cluster()
    observers = [
        ClusterMember(ClusterSettings(etcd=etcd.endpoint, cluster=cluster, node=f"o{n}"))
        for n in range(3)
    ]
    left: dict[str, float] = {}

    def listener(node: str) -> Callable[[MemberEvent], None]:
        def on_event(event: MemberEvent) -> None:
            if event.kind == "leave" and event.member.node == "victim":
                left.setdefault(node, time.monotonic())

        return on_event

    try:
        for o in observers:
            o.start()
            o.on_member_event(listener(o.node))
        with child_member(etcd=etcd.endpoint, cluster=cluster, node="victim") as victim:
            wait_until(lambda: all("victim" in o.members() for o in observers), 10)
            time.sleep(phase)  # vary the moment of the kill against the keepalive
            killed = time.monotonic()
            victim.signal(signal.SIGKILL)
            wait_until(lambda: len(left) == len(observers), 15)
        return sorted(t - killed for t in left.values())
    finally:
        for o in observers:
            o.stop()


def main(rounds: int) -> None:
    worst: list[float] = []
    with EmbeddedEtcd() as etcd:
        for i in range(rounds):
            delays = one_kill(etcd, 0.5 + (i % 5) * 0.2)
            worst.append(delays[-1])
            print(f"kill {i}: {', '.join(f'{d:.2f}' for d in delays)} s", flush=True)
    print(
        f"gone from every view: min {min(worst):.2f} s, median {statistics.median(worst):.2f} s, "
        f"max {max(worst):.2f} s over {rounds} kills"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
