"""Start-up on a swamped machine: N nodes at once while spinners load every core.

    python benchmarks/startup.py [--nodes 20] [--spinners 2]

Reports how many nodes became ready, the time until the last one did, and
the longest gap between two keep-alives etcd accepted, per node (each node
logs it when it stops): how close a starved node came to losing its lease
(TTL 3 s; keep-alives are due every 1 s).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from taskmesh.cluster import EmbeddedEtcd  # noqa: E402
from tests.integration.node.support import NodeProcess  # noqa: E402

GAP = re.compile(r"longest time between two accepted keep-alives: ([0-9.]+)s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--spinners", type=int, default=2)
    args = parser.parse_args()
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.spinners)
    ]
    nodes: list[NodeProcess] = []
    try:
        with EmbeddedEtcd() as etcd:
            start = time.monotonic()
            flags = ("--etcd", etcd.endpoint, "--cluster", "startup")
            app = ("--app", "tests.faults.apps:counter")
            nodes = [NodeProcess(*flags, *app, name=f"s{i:02d}") for i in range(args.nodes)]
            ready = 0
            for node in nodes:
                try:
                    node.wait_ready(timeout=300)
                    ready += 1
                except AssertionError:
                    pass
            took = time.monotonic() - start
            for node in nodes:
                node.terminate()
            gaps = [
                float(m.group(1))
                for node in nodes
                for line in node.stderr
                if (m := GAP.search(line))
            ]
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()
        for node in nodes:
            node.close()
    print(f"{ready}/{args.nodes} nodes ready in {took:.1f} s with {args.spinners} spinners")
    if gaps:
        print(
            f"longest keep-alive gap per node: median {statistics.median(gaps):.2f} s, "
            f"worst {max(gaps):.2f} s (TTL 3 s, keep-alives due every 1 s)"
        )


if __name__ == "__main__":
    main()
