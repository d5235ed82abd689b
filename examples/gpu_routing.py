"""Capability routing: only the node started with ``--capability gpu`` gets
the GPU work.

Run:  python examples/gpu_routing.py

Three `taskmesh node` processes join one embedded etcd; every node runs a
``cpu`` worker, and only the node labelled ``gpu`` runs a ``gpu`` worker
(the app function checks the node's labels). A client then sends work by
capability and prints which node handled it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import taskmesh

ROOT = Path(__file__).resolve().parents[1]


class CpuWorker(taskmesh.Actor):
    capabilities = ("cpu",)

    def receive(self, job: dict[str, Any]) -> dict[str, Any]:
        return {"job": job["id"], "node": self.node.node_id, "result": sum(range(job["n"]))}


class GpuWorker(taskmesh.Actor):
    capabilities = ("gpu",)

    def receive(self, job: dict[str, Any]) -> dict[str, Any]:
        return {"job": job["id"], "node": self.node.node_id, "result": job["n"] ** 2}


def setup(node: taskmesh.Node) -> None:
    """``--app examples.gpu_routing:setup``: workers by the node's labels."""
    node.spawn(CpuWorker, name=f"cpu-{node.node_id}")
    if "gpu" in node.capabilities:
        node.spawn(GpuWorker, name=f"gpu-{node.node_id}")


def start_node(name: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "taskmesh", "node", "--name", name, "--cluster", "gpu-demo",
         "--app", "examples.gpu_routing:setup", "--log-level", "WARNING", *extra],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def wait_ready(proc: subprocess.Popen[str]) -> str | None:
    """Read status lines until ready; return the embedded etcd URL if printed."""
    assert proc.stdout is not None
    etcd = None
    for line in proc.stdout:
        if line.startswith("taskmesh: embedded etcd at "):
            etcd = line.split()[4]
        if line.strip() == "taskmesh: ready":
            return etcd
    raise SystemExit(f"a node exited with {proc.wait()} before it was ready")


def main() -> None:
    nodes = [start_node("edge-1")]
    try:
        etcd = wait_ready(nodes[0])
        assert etcd is not None
        nodes.append(start_node("edge-2", "--etcd", etcd))
        nodes.append(start_node("edge-gpu", "--etcd", etcd, "--capability", "gpu"))
        for proc in nodes[1:]:
            wait_ready(proc)
        with taskmesh.connect(etcd=etcd, cluster="gpu-demo") as client:
            gpu = Counter(
                client.capability("gpu").ask({"id": i, "n": i}, timeout=10)["node"]
                for i in range(10)
            )
            cpu = Counter(
                client.capability("cpu").ask({"id": i, "n": 1000}, timeout=10)["node"]
                for i in range(9)
            )
        print(f"gpu jobs per node: {dict(sorted(gpu.items()))}")
        print(f"cpu jobs per node: {dict(sorted(cpu.items()))}")
    finally:
        for proc in reversed(nodes):  # the etcd host last
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            if proc.stdout is not None:
                proc.stdout.close()


if __name__ == "__main__":
    main()
