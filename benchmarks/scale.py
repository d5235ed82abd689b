"""Idle cluster cost against its size: CPU per node, etcd requests and watch events.

    python benchmarks/scale.py [--sizes 3,10,25,50] [--rest 20] [--before DIR]

For each size N it starts one etcd and N ``taskmesh node`` processes (each
with three named actors, as ``tests/faults/apps.py:counter`` spawns), waits
until all are ready and a few seconds more, then measures over ``--rest``
seconds of rest:

- CPU per node: the nodes' own CPU time (user + system) over the window,
  averaged over nodes, in percent of one core;
- etcd requests/s: gRPC messages etcd received (every unary call and every
  stream message, keep-alives included: ``grpc_server_msg_received_total``);
- watch events/s: watch responses etcd sent (``grpc_server_msg_sent_total`` of
  ``Watch``; a response carries the events of one revision, so one write
  seen by N watchers counts N).

The 3-node row is the baseline: the CPU column is also given as a ratio to
it. ``--before DIR`` runs the same with the taskmesh source tree in DIR (an
older checkout, e.g. ``git archive <commit> | tar -x -C DIR``) and prints
both in one table.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from taskmesh.cluster import EmbeddedEtcd  # noqa: E402


@dataclass
class Row:
    source: str
    nodes: int
    cpu: float
    requests: float
    events: float
    failed: int
    """Nodes that exited or hung before ready (the others are measured)."""


def etcd_counters(etcd: EmbeddedEtcd) -> tuple[float, float]:
    """(gRPC messages received, watch responses sent) so far."""
    with urllib.request.urlopen(etcd.endpoint + "/metrics", timeout=10) as reply:
        body = reply.read().decode()
    received = sum(
        float(m.group(1))
        for m in re.finditer(r"^grpc_server_msg_received_total\{[^}]*\} (\S+)$", body, re.M)
    )
    events = re.search(
        r'^grpc_server_msg_sent_total\{grpc_method="Watch",grpc_service="etcdserverpb.Watch"[^}]*\} (\S+)$',
        body,
        re.M,
    )
    return received, float(events.group(1)) if events else 0.0


def start_node(source: Path, etcd: str, cluster: str, name: str) -> subprocess.Popen[str]:
    # cwd is the source tree too: ``python -m`` puts it first on sys.path.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKMESH_")}
    env["PYTHONPATH"] = f"{source}{os.pathsep}{ROOT}"
    return subprocess.Popen(
        [sys.executable, "-m", "taskmesh", "node", "--etcd", etcd, "--cluster", cluster,
         "--name", name, "--app", "tests.faults.apps:counter", "--log-level", "WARNING"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=source,
    )  # fmt: skip


def wait_ready(proc: subprocess.Popen[str], timeout: float = 300.0) -> bool:
    """Whether the node printed ``ready`` (False: it exited or hung first)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        if line.strip() == "taskmesh: ready":
            return True
        if time.monotonic() > deadline:
            break
    return False


def measure(source: Path, label: str, size: int, rest: float, settle: float) -> Row:
    with EmbeddedEtcd() as etcd:
        procs = [start_node(source, etcd.endpoint, "scale", f"n{i:03d}") for i in range(size)]
        try:
            failed = sum(not wait_ready(proc) for proc in procs)
            procs = [p for p in procs if p.poll() is None]
            time.sleep(settle)  # a benchmark's fixed window: let start-up traffic pass
            handles = [psutil.Process(p.pid) for p in procs]
            cpu0 = [sum(h.cpu_times()[:2]) for h in handles]
            req0, ev0 = etcd_counters(etcd)
            t0 = time.monotonic()
            time.sleep(rest)
            elapsed = time.monotonic() - t0
            cpu1 = [sum(h.cpu_times()[:2]) for h in handles]
            req1, ev1 = etcd_counters(etcd)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    per_node = sum(b - a for a, b in zip(cpu0, cpu1, strict=True)) / len(procs) / elapsed * 100
    return Row(label, size, per_node, (req1 - req0) / elapsed, (ev1 - ev0) / elapsed, failed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="3,10,25,50")
    parser.add_argument("--rest", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=8.0)
    parser.add_argument("--before", type=Path, default=None, help="an older source tree")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    sources = [("after", ROOT)]
    if args.before is not None:
        sources.insert(0, ("before", args.before.resolve()))
    rows: list[Row] = []
    for size in sizes:  # interleave before and after, size by size (the machine drifts)
        for label, source in sources:
            row = measure(source, label, size, args.rest, args.settle)
            print(
                f"  {label} N={size}: cpu {row.cpu:.2f}%/node, {row.requests:.1f} req/s, "
                f"{row.events:.1f} events/s, {row.failed} failed to start",
                flush=True,
            )
            rows.append(row)
    print()
    print(
        "| code | nodes | CPU per node at rest | vs 3 nodes | etcd requests/s | per node "
        "| watch events/s | nodes that failed to start |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        base = next((r.cpu for r in rows if r.source == row.source and r.nodes == sizes[0]), 0)
        ratio = f"{row.cpu / base:.2f}x" if base else "-"
        print(
            f"| {row.source} | {row.nodes} | {row.cpu:.2f} % | {ratio} | {row.requests:.0f} "
            f"| {row.requests / row.nodes:.2f} | {row.events:.0f} | {row.failed} |"
        )


if __name__ == "__main__":
    main()
