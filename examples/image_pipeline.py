"""An image pipeline in the style of Celery's canvas and beat, with no broker.

Run:  python examples/image_pipeline.py

Two `taskmesh node` processes join one embedded etcd. Each runs an image
resizer (capability ``image.resize``), and the app declares two schedules
(every node declares them; a repeat is a no-op): a nightly report at 02:00
and a sweep of stale thumbnails every 2 seconds. The leader fires them, and
keeps firing them if a node dies. It also caps the resizers at 100 resizes
a second, **cluster-wide** (Celery's ``rate_limit`` is per worker): every
sender of the cluster, the workflow coordinators and this script included,
shares one token bucket in etcd.

A client then runs a **chord**: ten resizes side by side, then ``merge``
with the list of their results, as soon as the last one arrives. The
workflow is coordinated by a node of the cluster, not by this script: the
script could die and fetch the outcome later with ``client.result(id)``.
Then it sends 150 more resizes itself, which the limit paces.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import taskmesh

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = "image-demo"


class Resizer(taskmesh.Actor):
    """Makes a thumbnail (here: computes its size)."""

    capabilities = ("image.resize",)

    def receive(self, job: dict[str, Any]) -> dict[str, Any]:
        width = job["width"] // 4
        return {"img": job["img"], "width": width, "node": self.node.node_id}


class Merger(taskmesh.Actor):
    """Lays the thumbnails out on a contact sheet."""

    capabilities = ("merge",)

    def receive(self, thumbnails: list[dict[str, Any]]) -> dict[str, Any]:
        return {"thumbnails": len(thumbnails), "sheet_width": sum(t["width"] for t in thumbnails)}


class Reports(taskmesh.Actor):
    """Writes reports; the schedules deliver to it. ``"count"`` says how many ticks came."""

    capabilities = ("reports",)

    def on_start(self) -> None:
        self.received: list[Any] = []

    def receive(self, message: Any) -> Any:
        if message == "count":
            return len(self.received)
        self.received.append(message)
        return "done"


def setup(node: taskmesh.Node) -> None:
    """``--app examples.image_pipeline:setup``."""
    node.spawn(Resizer, name=f"resizer-{node.node_id}")
    if node.node_id == "img-1":
        node.spawn(Merger, name="merger")
        node.spawn(Reports, name="reports")
    node.set_limit("image.resize", rate=100.0)  # every sender in the cluster together
    node.schedule("nightly-report", cron="0 2 * * *", to="reports", message={"kind": "daily"},
                  capability=True)  # fmt: skip
    node.schedule("thumbnail-sweep", every=2.0, to="reports", message={"kind": "sweep"},
                  capability=True)  # fmt: skip


def start_node(name: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "taskmesh", "node", "--name", name, "--cluster", CLUSTER,
         "--app", "examples.image_pipeline:setup", "--log-level", "WARNING", *extra],
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
    nodes = [start_node("img-1")]
    try:
        etcd = wait_ready(nodes[0])
        assert etcd is not None
        nodes.append(start_node("img-2", "--etcd", etcd))
        wait_ready(nodes[1])
        with taskmesh.connect(etcd=etcd, cluster=CLUSTER) as client:
            thumbnails = [
                taskmesh.step(
                    "image.resize",
                    {"img": f"photo-{i}.jpg", "width": 4000 + 4 * i},
                    capability=True,
                )
                for i in range(10)
            ]
            sheet = client.run(
                taskmesh.chord(thumbnails, taskmesh.step("merge", capability=True)), timeout=60.0
            )
            print(
                f"contact sheet: {sheet['thumbnails']} thumbnails, {sheet['sheet_width']} px wide"
            )
            deadline = time.monotonic() + 30.0
            while client.ask("reports", "count", timeout=10.0) < 1:
                if time.monotonic() > deadline:
                    raise SystemExit("the thumbnail sweep never fired")
                time.sleep(0.2)  # polling the example's own actor, with a deadline
            print("thumbnail sweep: fired by the leader")
            resize = client.capability("image.resize")
            started = time.monotonic()
            for i in range(150):
                resize.ask({"img": f"extra-{i}.jpg", "width": 400}, timeout=10.0)
            took = time.monotonic() - started
            print(
                f"150 more resizes took {took:.2f} s: 10 at once (the limit's burst), then "
                "100 a second (its rate, cluster-wide)"
            )
        for command in ("schedules", "limits"):
            for line in subprocess.run(
                [sys.executable, "-m", "taskmesh", command, "--etcd", etcd, "--cluster", CLUSTER],
                capture_output=True, text=True, check=True, cwd=ROOT,
            ).stdout.splitlines():  # fmt: skip
                print(line)
    finally:
        for proc in reversed(nodes):  # the etcd host last
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            if proc.stdout is not None:
                proc.stdout.close()
    print("both nodes stopped")


if __name__ == "__main__":
    main()
