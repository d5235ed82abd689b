"""A fleet of devices as sharded entities, surviving the loss of a node.

Run:  python examples/device_fleet.py [--devices N]

This process starts node "hub" with an embedded etcd; it sends the
readings. Two more nodes, "edge-1" and "edge-2", are separate ``taskmesh
node`` processes that host the ``device`` entities: one entity per device
id, activated on its first reading wherever its shard lives, keeping its
readings in its state (stored in the cluster's etcd). Then edge-1 is killed
(``kill -9``: no goodbye). Once its lease expires, its shards move to
edge-2, and its devices carry on there, with every reading they had.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import taskmesh

ROOT = Path(__file__).resolve().parents[1]


class Device(taskmesh.Entity):
    """One device: counts its readings and keeps the last and the highest."""

    entity_type = "device"
    persistent = True  # self.state is loaded before on_activate, stored by save()
    idle_timeout = 60.0  # passivated after a minute without readings

    def initial_state(self) -> Any:
        return {"readings": 0, "last": None, "max": None}

    async def receive(self, message: Any) -> Any:
        state = self.state
        if message["op"] == "reading":
            celsius = message["celsius"]
            state["readings"] += 1
            state["last"] = celsius
            state["max"] = celsius if state["max"] is None else max(state["max"], celsius)
            await self.save()  # stored (fenced) before the answer goes out
        return {"device": self.entity_id, "node": self.node.node_id, **state}


def devices(node: taskmesh.Node) -> None:
    """``--app examples.device_fleet:devices``: this node hosts device shards."""
    node.host(Device)


def start_edge(name: str, etcd: str) -> subprocess.Popen[str]:
    """A ``taskmesh node`` process hosting devices."""
    return subprocess.Popen(
        [sys.executable, "-m", "taskmesh", "node", "--name", name, "--cluster", "fleet",
         "--etcd", etcd, "--app", "examples.device_fleet:devices", "--log-level", "WARNING"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "taskmesh: ready":
            return
    raise SystemExit("an edge node did not start")


def reading_round(hub: taskmesh.Node, ids: list[str], step: int) -> dict[str, Any]:
    """Send every device one reading; return their answers by id."""
    answers = {}
    for i, device in enumerate(ids):
        celsius = 20.0 + (i * 7 + step * 3) % 15
        answers[device] = hub.entity("device", device).ask(
            {"op": "reading", "celsius": celsius}, timeout=30.0, retries=60
        )
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=20)
    opts = parser.parse_args()
    ids = [f"dock-{i}" for i in range(opts.devices)]

    with taskmesh.Node(cluster="fleet", name="hub") as hub:
        etcd = hub.etcd_endpoints[0]
        edges = {name: start_edge(name, etcd) for name in ("edge-1", "edge-2")}
        try:
            for proc in edges.values():
                wait_ready(proc)
            # Readings go on while the leader spreads the shards over both edges.
            rounds = 0
            deadline = time.monotonic() + 30
            while True:
                answers = reading_round(hub, ids, rounds)
                rounds += 1
                where = sorted({a["node"] for a in answers.values()})
                if len(where) == 2 or time.monotonic() > deadline:
                    break
            held = [d for d, a in answers.items() if a["node"] == "edge-1"]
            print(f"{len(ids)} devices across {where} (readings so far: {rounds} each)")

            edges["edge-1"].kill()  # SIGKILL: the node is simply gone
            edges["edge-1"].wait()
            killed = time.monotonic()
            print(f"killed edge-1 (kill -9), which held {len(held)} devices")
            answers = reading_round(hub, ids, rounds)
            moved = time.monotonic() - killed
            where = sorted({a["node"] for a in answers.values()})
            kept = sum(a["readings"] == rounds + 1 for a in answers.values())
            print(
                f"after the loss: {len(ids)} devices on {where}, readings kept: {kept}/{len(ids)}"
            )
            print(
                f"(its devices answered again {moved:.1f} s after the kill: the lease TTL is 3 s)"
            )
            sample = answers[held[0]] if held else answers[ids[0]]
            print(f"{sample['device']}: {sample['readings']} readings, max {sample['max']} C")
        finally:
            for proc in edges.values():
                if proc.poll() is None:
                    proc.terminate()
            for proc in edges.values():
                proc.wait(60)
                if proc.stdout is not None:
                    proc.stdout.close()
    print("fleet stopped")


if __name__ == "__main__":
    main()
