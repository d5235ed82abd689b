"""An edge cluster rehearsed on one machine: three nodes sharing a
three-member etcd quorum, surviving the loss of one etcd member.

Run:  python examples/edge/edge_cluster.py

On real boards each machine runs one etcd member and one `taskmesh node`
(see README.md and the systemd units beside this file); here all of them
run on 127.0.0.1 with free ports.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import taskmesh
from taskmesh.cluster import start_quorum

ROOT = Path(__file__).resolve().parents[2]


class Sensor(taskmesh.Actor):
    """Answers readings for the board it runs on."""

    capabilities = ("sensor",)

    def receive(self, message: Any) -> dict[str, Any]:
        return {"board": self.node.node_id, "reading": 21.5}


def setup(node: taskmesh.Node) -> None:
    """``--app examples.edge.edge_cluster:setup``."""
    node.spawn(Sensor, name=f"sensor-{node.node_id}")


def start_node(name: str, etcd: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskmesh", "node", "--name", name, "--cluster", "edge",
         "--etcd", etcd, "--app", "examples.edge.edge_cluster:setup", "--log-level", "ERROR"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "taskmesh: ready":
            return proc
    raise SystemExit(f"node {name} exited with {proc.wait()} before it was ready")


def main() -> None:
    with start_quorum(3) as quorum:
        etcd = ",".join(quorum.endpoints)
        print(f"etcd quorum: {etcd}")
        nodes: list[subprocess.Popen[str]] = []
        try:
            for i in range(3):
                nodes.append(start_node(f"board-{i}", etcd))
            with taskmesh.connect(etcd=quorum.endpoints, cluster="edge") as client:
                print(f"members: {sorted(client.members())}")
                boards = {client.capability("sensor").ask("read")["board"] for _ in range(6)}
                print(f"sensor readings came from: {sorted(boards)}")
                quorum.members[0].kill()
                print("killed etcd member m0; the quorum carries on with two of three")
                for i in range(3):
                    reply = client.ask(f"sensor-board-{i}", "read", timeout=10)
                    print(f"  sensor-board-{i} -> {reply}")
        finally:
            for proc in nodes:
                proc.send_signal(signal.SIGTERM)
            for proc in nodes:
                proc.wait(60)
                if proc.stdout is not None:
                    proc.stdout.close()
    print("cluster stopped")


if __name__ == "__main__":
    main()
