"""Ping-pong between two nodes: the first taskmesh program to run.

Run:  python examples/pingpong.py [--rallies N]

This process starts node "ping" with an embedded etcd, then starts a second
node, "pong", as a separate `taskmesh node` process that joins it. The Ping
actor and the Pong actor then tell a ball back and forth across the
ZeroMQ mesh; at the end, both nodes are stopped.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import taskmesh

ROOT = Path(__file__).resolve().parents[1]


class Pong(taskmesh.Actor):
    """Sends every ball back to the actor named in ``reply_to``."""

    def receive(self, ball: dict[str, Any]) -> None:
        self.node.ref(ball["reply_to"]).tell({**ball, "n": ball["n"] + 1})


class Ping(taskmesh.Actor):
    """Serves until ``rallies`` balls came back, then sets ``done``."""

    def __init__(self, rallies: int, done: threading.Event) -> None:
        self.rallies = rallies
        self.done = done
        self.started = 0.0

    def receive(self, message: Any) -> Any:
        pong = self.node.ref("pong")
        if message == "serve":
            self.started = time.perf_counter()
            pong.tell({"n": 0, "reply_to": self.name})
            return None
        if message["n"] >= 2 * self.rallies:
            elapsed = time.perf_counter() - self.started
            print(f"{self.rallies} rallies across two nodes in {elapsed * 1000:.1f} ms")
            self.done.set()
            return None
        pong.tell({**message, "n": message["n"] + 1})
        return None


def pong(node: taskmesh.Node) -> None:
    """``--app examples.pingpong:pong`` for the second node."""
    node.spawn(Pong, name="pong")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rallies", type=int, default=1000)
    opts = parser.parse_args()

    with taskmesh.Node(cluster="pingpong", name="ping") as node:
        print(f"node ping up, embedded etcd at {node.etcd_endpoints[0]}")
        other = subprocess.Popen(
            [sys.executable, "-m", "taskmesh", "node", "--name", "pong", "--cluster", "pingpong",
             "--etcd", node.etcd_endpoints[0], "--app", "examples.pingpong:pong",
             "--log-level", "WARNING"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert other.stdout is not None
            for line in other.stdout:
                if line.strip() == "taskmesh: ready":
                    break
            else:
                raise SystemExit("the pong node did not start")
            print("node pong up")
            done = threading.Event()
            node.spawn(Ping, name="ping", rallies=opts.rallies, done=done)
            node.ref("ping").tell("serve")
            if not done.wait(60):
                raise SystemExit("the rally did not finish within 60 s")
        finally:
            other.send_signal(signal.SIGTERM)
            other.wait(30)
            if other.stdout is not None:
                other.stdout.close()
    print("both nodes stopped")


if __name__ == "__main__":
    main()
