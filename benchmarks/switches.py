"""Thread wake-ups per sync round trip: taskmesh's public ask against raw pyzmq.

Run from the repository root (Linux: it reads ``/proc``)::

    .venv/bin/python benchmarks/switches.py            # 20,000 asks per row
    .venv/bin/python benchmarks/switches.py --asks 2000

A sync round trip's cost on a small machine is mostly threads waking up
(tens of microseconds each on a VM), and unlike a rate, the number of
context switches per round trip barely moves with the machine's load.
This counts them, per thread, from ``/proc/<pid>/task/<tid>/status``
(voluntary plus involuntary), on both sides: ``client.ref(name).ask`` to
the threaded actor ``echo`` and the inline actor ``echo-inline`` on a
``taskmesh node`` process (as ``benchmarks/remote.py`` runs them), and raw
pyzmq + msgpack between two processes. Threads that switch less than once
per 1,000 round trips are left out.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import taskmesh  # noqa: E402
from benchmarks.remote import CLUSTER, Raw, start_node  # noqa: E402
from benchmarks.remote_servers import start_server  # noqa: E402
from taskmesh.cluster import EmbeddedEtcd  # noqa: E402

Counts = dict[int, int]


def switches(pid: int) -> Counts:
    """Context switches so far of each thread of ``pid``."""
    counts: Counts = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        total = 0
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as status:
                for line in status:
                    if "ctxt_switches" in line:
                        total += int(line.split(":")[1])
        except OSError:
            continue  # ended meanwhile
        counts[int(tid)] = total
    return counts


def names(pid: int) -> dict[int, str]:
    """Thread names: Python's for this process, the kernel's for others."""
    found: dict[int, str] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as comm:
                found[int(tid)] = comm.read().strip()
        except OSError:
            continue
    if pid == os.getpid():
        found.update({t.native_id: t.name for t in threading.enumerate() if t.native_id})
    return found


def measure(label: str, round_trip: Callable[[int], Any], pids: dict[str, int], n: int) -> None:
    """Print switches per round trip of every busy thread of ``pids``."""
    for i in range(500):  # warm up
        round_trip(i)
    before = {side: switches(pid) for side, pid in pids.items()}
    started = time.perf_counter()
    for i in range(n):
        round_trip(i)
    rate = n / (time.perf_counter() - started)
    print(f"{label}: {rate:,.0f} round trips/s; context switches per round trip:")
    for side, pid in pids.items():
        after = switches(pid)
        thread_names = names(pid)
        for tid, count in sorted(after.items()):
            per = (count - before[side].get(tid, 0)) / n
            if per >= 0.001:
                print(f"  {side:7s} {thread_names.get(tid, str(tid)):28s} {per:6.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--asks", type=int, default=20_000, help="round trips per row")
    args = parser.parse_args()
    me = os.getpid()

    raw_proc, endpoints = start_server(["raw", "1"])
    try:
        raw = Raw(endpoints)
        sock = raw._dealer(endpoints[0])
        packb, unpackb = msgpack.packb, msgpack.unpackb

        def raw_round_trip(i: int) -> None:
            sock.send(packb([1, {"n": i}]))
            unpackb(sock.recv())

        measure(
            "raw pyzmq + msgpack", raw_round_trip, {"caller": me, "server": raw_proc.pid}, args.asks
        )
        sock.close()
        raw.close()
    finally:
        raw_proc.kill()
        raw_proc.wait()

    etcd = EmbeddedEtcd().start()
    try:
        node = start_node(etcd.endpoint)
        try:
            with taskmesh.connect(etcd=etcd.endpoint, cluster=CLUSTER) as client:
                deadline = time.monotonic() + 30
                while not client.routes().get("echo"):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the node's actors did not appear")
                    time.sleep(0.05)
                for actor in ("echo", "echo-inline"):
                    measure(
                        f"client.ref({actor!r}).ask",
                        client.ref(actor).ask,
                        {"client": me, "node": node.pid},
                        args.asks,
                    )
        finally:
            node.terminate()
            node.wait(30)
    finally:
        etcd.stop()


if __name__ == "__main__":
    main()
