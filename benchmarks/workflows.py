"""Measure: what a workflow step costs over a plain ask, through the public API.

Run: ``.venv/bin/python benchmarks/workflows.py [rounds]`` (default 3).

Two ``taskmesh node`` processes share an embedded etcd; each runs an actor
holding the capability ``work`` that answers with its message. A client
does, per round and interleaved:

- ``asks, sequential``: N ``client.capability("work").ask`` one after another
  (the baseline for a chain);
- ``chain of N steps``: ``client.run(chain(step("work", ...) * N))``;
- ``asks, pipelined``: N ``ask_async`` sent at once, then all answers
  (the baseline for a chord);
- ``chord of N members``: ``client.run(chord([step("work", ...)] * N, step("work")))``.

Each workflow step is an ask plus one etcd transaction (the result, guarded
by the coordinator's claim) on the coordinating node. The table reports
the median time per step (or per ask) and the ratio to its baseline.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import taskmesh
from taskmesh import chain, chord, step
from taskmesh.cluster import EmbeddedEtcd

ROOT = Path(__file__).resolve().parents[1]
N = 100
CLUSTER = "bench-workflows"


class Work(taskmesh.Actor):
    capabilities = ("work",)

    def receive(self, message: Any) -> Any:
        return message


def setup(node: taskmesh.Node) -> None:
    """``--app benchmarks.workflows:setup``."""
    node.spawn(Work, name=f"work-{node.node_id}")


def start_node(name: str, etcd: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskmesh", "node", "--name", name, "--cluster", CLUSTER,
         "--etcd", etcd, "--app", "benchmarks.workflows:setup", "--log-level", "WARNING"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "taskmesh: ready":
            return proc
    raise SystemExit(f"node {name} exited with {proc.wait()} before it was ready")


def timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    etcd = EmbeddedEtcd().start()
    nodes: list[subprocess.Popen[str]] = []
    try:
        nodes = [start_node(f"w{i}", etcd.endpoint) for i in range(2)]
        with taskmesh.connect(etcd=etcd.endpoint, cluster=CLUSTER) as client:
            work = client.capability("work")
            while len(client.routes().get("taskmesh.workflows", [])) < 2:
                time.sleep(0.05)  # waiting for both coordinators to be routable
            client.run(chain(step("work", 0, capability=True)), timeout=60.0)  # warm up

            def sequential() -> None:
                for i in range(N):
                    work.ask(i, timeout=10.0)

            def pipelined() -> None:
                replies = [work.ask_async(i, timeout=10.0) for i in range(N)]
                for reply in replies:
                    reply.get(10.0)

            steps = [step("work", i, capability=True) for i in range(N)]
            runs: dict[str, list[float]] = {k: [] for k in ("seq", "chain", "pipe", "chord")}
            for _ in range(rounds):
                runs["seq"].append(timed(sequential) / N)
                runs["chain"].append(timed(lambda: client.run(chain(steps), timeout=300.0)) / N)
                runs["pipe"].append(timed(pipelined) / N)
                runs["chord"].append(
                    timed(
                        lambda: client.run(
                            chord(steps, step("work", capability=True)), timeout=300.0
                        )
                    )
                    / (N + 1)
                )
        median = {k: statistics.median(v) for k, v in runs.items()}
        print(f"{rounds} rounds of N={N}, median time per step (per ask for the baselines)")
        print(f"{'benchmark':<24}{'per step':>12}{'ratio':>10}")
        for label, key, base in (
            ("asks, sequential", "seq", "seq"),
            (f"chain of {N} steps", "chain", "seq"),
            ("asks, pipelined", "pipe", "pipe"),
            (f"chord of {N} members", "chord", "pipe"),
        ):
            ratio = median[key] / median[base]
            print(f"{label:<24}{median[key] * 1000:>10.2f}ms{ratio:>9.1f}x")
    finally:
        for proc in nodes:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            if proc.stdout is not None:
                proc.stdout.close()
        etcd.stop()


if __name__ == "__main__":
    main()
