"""Measure: how exact cluster-wide limits are, and what one costs per message.

Run: ``.venv/bin/python benchmarks/limits.py [seconds] [rounds]`` (defaults
30 and 5).

Three ``taskmesh node`` processes share an embedded etcd.

**Accuracy** (for ``seconds``): four senders on the three nodes (two on
``n1``, asking and telling; one on ``n2`` asking, one on ``n3`` telling)
send as fast as they can through ``node.capability("limited")``, limited to
``rate=200``; its holders note when each message arrives. At the same time
seven senders (five on the nodes, two threads of this script's client) ask
``gpu``, limited to ``concurrency=4``, whose holders report each ask's
start and end to a meter actor. Reported: the arrival rate (after the
bucket's first second) against 200/s, and the most asks the meter saw in
flight at once.

**Overhead** (``rounds`` rounds, interleaved): sync asks through the public
API to an unlimited capability, and to one with a limit that never runs
out of tokens or slots (``rate=1e6, concurrency=1000``), both held by the
same kind of actor: from this script's client to an actor on ``n1``
(remote), and on a node in this process to a local actor (where the
runtime's own cost is most visible). Also tells, local. Reported: the
median messages per second, the ratio, and the difference in microseconds
per message. An unlimited capability pays one dict lookup for the hook:
its cost is measured too.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import taskmesh
from taskmesh.cluster import EmbeddedEtcd

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = "bench-limits"
RATE = 200.0
SLOTS = 4
N = 2000


class Arrivals(taskmesh.Actor):
    capabilities = ("limited",)

    def on_start(self) -> None:
        self.times: list[float] = []

    def receive(self, message: Any) -> Any:
        if message == "times":
            return self.times
        self.times.append(time.time())
        return None


class Gpu(taskmesh.Actor):
    capabilities = ("gpu",)

    def receive(self, message: Any) -> Any:
        meter = self.node.ref("meter")
        meter.ask("enter", timeout=10.0)
        try:
            threading.Event().wait(0.05)
        finally:
            meter.ask("leave", timeout=10.0)
        return None


class Meter(taskmesh.Actor):
    def on_start(self) -> None:
        self.now = self.peak = self.total = 0

    def receive(self, message: Any) -> Any:
        if message == "enter":
            self.now += 1
            self.total += 1
            self.peak = max(self.peak, self.now)
        elif message == "leave":
            self.now -= 1
        return {"peak": self.peak, "total": self.total}


class Sender(taskmesh.Actor):
    def receive(self, job: Any) -> Any:
        if job == "limits":  # the limits this node obeys
            return sorted(self.node.locator.limits) if self.node.locator else []
        ref = self.node.capability(job["to"])
        sent = 0
        while time.time() < job["until"]:
            if job["how"] == "ask":
                ref.ask(job.get("message"), timeout=30.0)
            else:
                ref.tell(job.get("message"))
            sent += 1
        return sent


class Echo(taskmesh.Actor):
    capabilities = ("free", "capped")

    def receive(self, message: Any) -> Any:
        return message


class LocalEcho(Echo):
    capabilities = ("free.local", "capped.local")


def setup(node: taskmesh.Node) -> None:
    """``--app benchmarks.limits:setup``."""
    me = node.node_id
    for i in range(2):
        node.spawn(Arrivals, name=f"arrivals-{me}-{i}")
        node.spawn(Sender, name=f"sender-{me}-{i}")
        node.spawn(Sender, name=f"gpu-sender-{me}-{i}")
        node.spawn(Gpu, name=f"gpu-{me}-{i}")
    if me == "n1":
        node.spawn(Meter, name="meter")
        node.spawn(Echo, name="echo")


def start_node(name: str, etcd: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskmesh", "node", "--name", name, "--cluster", CLUSTER,
         "--etcd", etcd, "--app", "benchmarks.limits:setup", "--log-level", "WARNING"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "taskmesh: ready":
            return proc
    raise SystemExit(f"node {name} exited with {proc.wait()} before it was ready")


def accuracy(client: taskmesh.Client, seconds: float) -> None:
    start = time.time() + 1.0
    until = start + seconds
    jobs = [("sender-n1-0", "ask"), ("sender-n1-1", "tell"),
            ("sender-n2-0", "ask"), ("sender-n3-0", "tell")]  # fmt: skip
    replies = [
        client.ref(sender).ask_async(
            {"to": "limited", "until": until, "how": how, "message": "m"}, timeout=seconds + 60
        )
        for sender, how in jobs
    ]
    for sender in ("gpu-sender-n1-0", "gpu-sender-n1-1", "gpu-sender-n2-0", "gpu-sender-n2-1",
                   "gpu-sender-n3-0"):  # fmt: skip
        replies.append(
            client.ref(sender).ask_async(
                {"to": "gpu", "until": until, "how": "ask"}, timeout=seconds + 60
            )
        )

    def ask_gpu() -> None:
        while time.time() < until:
            client.capability("gpu").ask(None, timeout=30.0)

    threads = [threading.Thread(target=ask_gpu) for _ in range(2)]
    for thread in threads:
        thread.start()
    sent = [reply.get(seconds + 60) for reply in replies]
    for thread in threads:
        thread.join()
    arrivals = sorted(
        t
        for node in ("n1", "n2", "n3")
        for i in range(2)
        for t in client.ask(f"arrivals-{node}-{i}", "times")
    )
    first, last = start + 1.0, until
    rate = sum(first <= t < last for t in arrivals) / (last - first)
    meter = client.ask("meter", "read")
    print(f"accuracy over {seconds:g} s (4 senders on 3 nodes; first second left out)")
    print(f"  rate=200/s limit:        {rate:8.1f}/s  ({(rate / RATE - 1) * 100:+.1f} %)")
    print(f"  messages sent by each:   {sent[:4]}")
    print(f"  concurrency=4 limit:     at most {meter['peak']} in flight at once, "
          f"as the actors saw it ({meter['total']} asks by 7 senders)")  # fmt: skip


def per_message(label: str, calls: dict[str, Any], rounds: int) -> None:
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            started = time.perf_counter()
            for i in range(N):
                call(i)
            times[name].append((time.perf_counter() - started) / N)
    free, capped = (statistics.median(times[k]) for k in calls)
    print(f"  {label:<34}{1 / free:>10,.0f}/s{1 / capped:>10,.0f}/s"
          f"{free / capped:>8.2f}x{(capped - free) * 1e6:>9.1f} us")  # fmt: skip


def overhead(client: taskmesh.Client, node: taskmesh.Node, rounds: int) -> None:
    node.spawn(LocalEcho, name="echo-local")
    for capability in ("capped", "capped.local"):
        node.set_limit(capability, rate=1e6, burst=1e6, concurrency=1000)
    while (
        not {"capped", "capped.local"} <= node.locator.limits.keys() & client.locator.limits.keys()
    ):  # type: ignore[union-attr]
        time.sleep(0.05)  # waiting for the limits' watch to reach both
    remote_free, remote_capped = client.capability("free"), client.capability("capped")
    local_free, local_capped = node.capability("free.local"), node.capability("capped.local")
    for ref in (remote_free, remote_capped, local_free, local_capped):  # warm up
        for i in range(200):
            ref.ask(i, timeout=10.0)
    print(f"overhead: {rounds} rounds of {N} messages, medians "
          "(unlimited, limited, ratio, extra per message)")  # fmt: skip
    per_message("client -> node, sync ask", {
        "free": lambda i: remote_free.ask(i, timeout=10.0),
        "capped": lambda i: remote_capped.ask(i, timeout=10.0),
    }, rounds)  # fmt: skip
    per_message("in a node, local sync ask", {
        "free": lambda i: local_free.ask(i, timeout=10.0),
        "capped": lambda i: local_capped.ask(i, timeout=10.0),
    }, rounds)  # fmt: skip
    per_message("in a node, local tell", {
        "free": lambda i: local_free.tell(i),
        "capped": lambda i: local_capped.tell(i),
    }, rounds)  # fmt: skip
    limits = node.locator.limits  # type: ignore[union-attr]
    lookup = min(timeit.repeat(lambda: limits.get("free"), number=100_000, repeat=5)) / 100_000
    print(f"  the hook on an unlimited capability: one dict lookup, {lookup * 1e9:.0f} ns")


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    etcd = EmbeddedEtcd().start()
    nodes: list[subprocess.Popen[str]] = []
    try:
        nodes = [start_node(f"n{i}", etcd.endpoint) for i in (1, 2, 3)]
        with (
            taskmesh.connect(etcd=etcd.endpoint, cluster=CLUSTER) as client,
            taskmesh.Node(etcd=etcd.endpoint, cluster=CLUSTER, name="bench") as node,
        ):
            node.set_limit("limited", rate=RATE)
            node.set_limit("gpu", concurrency=SLOTS)
            for sender in ("sender-n1-0", "sender-n2-0", "sender-n3-0"):
                while client.ask(sender, "limits") != ["gpu", "limited"]:
                    time.sleep(0.05)  # waiting for the limits' watch on every node
            accuracy(client, seconds)
            overhead(client, node, rounds)
    finally:
        for proc in nodes:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            if proc.stdout is not None:
                proc.stdout.close()
        etcd.stop()


if __name__ == "__main__":
    main()
