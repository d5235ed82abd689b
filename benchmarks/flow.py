"""Flow control: what it costs when nothing is full, and what it does when
a mailbox fills up. Run from the repository root::

    .venv/bin/python benchmarks/flow.py            # about a minute
    .venv/bin/python benchmarks/flow.py --quick

It starts an embedded etcd and one ``taskmesh node`` process hosting the
actors of ``benchmarks/remote_apps.py``, and measures through the public
API (``taskmesh.connect``):

- **cost**: pipelined tells/s to an actor whose mailbox never fills, from a
  client with flow control (the default window) and from one without
  (``flow_window=0``: no credit is counted on the sending side), in
  interleaved rounds; the ratio is the price of flow control when nothing
  is full;
- **a full mailbox**: 200,000 tells from one client thread to ``counter``
  (an ordinary actor with the default 10,000-message mailbox, which the
  client outruns), while another thread asks a different actor of the same
  node every 20 ms. Reported: whether every tell arrived, the time, the
  node's peak RSS, and the latency of those asks (they must not wait
  behind the full mailbox).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import taskmesh  # noqa: E402
from benchmarks.remote import CLUSTER, start_node  # noqa: E402
from taskmesh.cluster import EmbeddedEtcd  # noqa: E402


def pipelined(client: taskmesh.Client, count: int) -> float:
    sink = client.ref("sink")
    sink.ask("reset", timeout=30)
    start = time.perf_counter()
    for i in range(count):
        sink.tell(i)
    got = sink.ask("count", timeout=120)
    elapsed = time.perf_counter() - start
    assert got == count, (got, count)
    return count / elapsed


def full_mailbox(client: taskmesh.Client, node_pid: int, count: int) -> dict[str, float]:
    counter = client.ref("counter")
    counter.ask("reset", timeout=30)
    process = psutil.Process(node_pid)
    peak = process.memory_info().rss
    latencies: list[float] = []
    done = threading.Event()

    depths = [0]
    ops = client.transport.ref(client.actors()["counter"][1], "_ops")

    def probe() -> None:
        echo = client.ref("echo")
        while not done.is_set():
            started = time.perf_counter()
            echo.ask("probe", timeout=30)
            latencies.append(time.perf_counter() - started)
            report = ops.ask({"query": "node", "letters": 0}, timeout=30)
            depths.append(max(a["mailbox"] for a in report["actors"] if a["name"] == "counter"))
            done.wait(0.02)

    prober = threading.Thread(target=probe)
    prober.start()
    start = time.perf_counter()
    try:
        for i in range(count):
            counter.tell(i)
            if i % 5_000 == 0:
                peak = max(peak, process.memory_info().rss)
        got = counter.ask("count", timeout=300)
    finally:
        done.set()
        prober.join(60)
    elapsed = time.perf_counter() - start
    peak = max(peak, process.memory_info().rss)
    latencies.sort()
    return {
        "arrived": got,
        "seconds": elapsed,
        "rss_mib": peak / 2**20,
        "probe_p50_ms": 1000 * statistics.median(latencies),
        "probe_max_ms": 1000 * latencies[-1],
        "probes": len(latencies),
        "dead_letters": float(sum(client.dead_letters.counts().values())),
        "max_depth": float(max(depths)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    tells = 50_000 if args.quick else 200_000

    etcd = EmbeddedEtcd().start()
    node = start_node(etcd.endpoint)
    try:
        with (
            taskmesh.connect(etcd=etcd.endpoint, cluster=CLUSTER) as flowing,
            taskmesh.connect(etcd=etcd.endpoint, cluster=CLUSTER, flow_window=0) as unbounded,
        ):
            deadline = time.monotonic() + 30
            while "counter" not in flowing.actors() and time.monotonic() < deadline:
                time.sleep(0.05)
            on, off = [], []
            for _ in range(rounds):
                off.append(pipelined(unbounded, tells))
                on.append(pipelined(flowing, tells))
            m_on, m_off = statistics.median(on), statistics.median(off)
            print(
                f"pipelined tells, nothing full: flow control {m_on:,.0f}/s "
                f"({min(on):,.0f}-{max(on):,.0f}), without {m_off:,.0f}/s "
                f"({min(off):,.0f}-{max(off):,.0f}): ratio {m_on / m_off:.2f} "
                "(goal: at least 0.90)",
                flush=True,
            )
            result = full_mailbox(flowing, node.pid, tells)
            print(
                f"{tells:,} tells to a 10,000-message mailbox (deepest seen: "
                f"{result['max_depth']:,.0f}): {result['arrived']:,.0f} arrived "
                f"in {result['seconds']:.1f} s, dead letters {result['dead_letters']:.0f}, "
                f"node peak RSS {result['rss_mib']:.0f} MiB (goal: under 400); asks to "
                f"another actor meanwhile: median {result['probe_p50_ms']:.1f} ms, "
                f"max {result['probe_max_ms']:.1f} ms over {result['probes']:.0f} (goal: "
                "under 100 ms)",
                flush=True,
            )
    finally:
        node.terminate()
        node.wait(30)
        if node.stdout is not None:
            node.stdout.close()
        etcd.stop(remove_data=True)


if __name__ == "__main__":
    main()
