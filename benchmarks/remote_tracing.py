"""What tracing costs on the message path: the ``tracing:`` rows of ``remote.py``.

Run from the repository root (``remote.py`` runs it too, after its rows)::

    git archive main | (mkdir -p /tmp/mainline && tar -x -C /tmp/mainline)
    .venv/bin/python benchmarks/remote_tracing.py --baseline /tmp/mainline
    .venv/bin/python benchmarks/remote_tracing.py --quick   # a smoke run

Each variant has a ``taskmesh node`` process (``benchmarks/remote_apps.py``)
and a caller process of its own, in a cluster of its own, so each runs its
own code on both sides of the wire:

- ``main``: the tree given with ``--baseline`` (another commit, e.g. main),
  tracing off: the main line this branch is measured against;
- ``off``: this tree, tracing off;
- ``off2``: the same again, with ``--baseline`` only: the two ``off``
  columns differ by the machine's noise alone, the yardstick for
  ``off/main``;
- ``on``: this tree, the node started with ``--otel-endpoint`` and the
  client made with ``otel_endpoint=``: every trace sampled (the SDK's
  default), every span exported over OTLP/HTTP to a sink that drops them;
- ``1%``: as ``on``, but the client samples 1% of its traces
  (``ParentBased(TraceIdRatioBased(0.01))``; the node follows the caller's
  decision), as one would at these rates.

The callers use the public API only (``client.ask``, ``client.ref``). Rounds
alternate the variants, so the machine's noise falls on all of them alike;
the medians and their ratios to ``off`` (and ``off`` to ``main``) are printed.
``off/main`` within noise of 1.00 is "tracing off costs nothing".
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 1000
CASES = [  # (case, what the caller does, unit)
    ("sync", "client.ask(name), threaded actor", "round trips/s"),
    ("sync-inline", "client.ask(name), inline actor", "round trips/s"),
    ("sync-retries", "client.ask(name, retries=2), threaded", "round trips/s"),
    ("tells", "pipelined tells", "messages/s"),
    ("asks", "pipelined asks, inline actor", "asks/s"),
]


# --- the caller process (runs whichever taskmesh its PYTHONPATH gives) --------


def caller(etcd: str, cluster: str, otel: str | None, ratio: float | None) -> None:
    """Answer each ``CASE AMOUNT`` line on stdin with the rate measured."""
    import taskmesh

    tracing: dict[str, Any] = {}
    if ratio is not None and otel is not None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio)))
        exporter = OTLPSpanExporter(endpoint=otel + "/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(exporter))
        tracing["tracer_provider"] = provider
    elif otel is not None:
        tracing["otel_endpoint"] = otel
    with taskmesh.connect(etcd=etcd, cluster=cluster, **tracing) as client:
        deadline = time.monotonic() + 30
        while "sink" not in client.actors() or not client.routes().get("echo"):
            if time.monotonic() > deadline:
                raise RuntimeError("the node's actors did not appear")
            time.sleep(0.05)

        def sync(name: str, seconds: float, **options: Any) -> float:
            client.ask(name, {"n": -1}, timeout=10, **options)
            n = 0
            start = time.perf_counter()
            end = start + seconds
            while True:
                for _ in range(100):
                    client.ask(name, {"n": n}, timeout=10, **options)
                    n += 1
                now = time.perf_counter()
                if now >= end:
                    return n / (now - start)

        def tells(count: int) -> float:
            sink = client.ref("sink")
            sink.ask("reset", timeout=10)
            start = time.perf_counter()
            for i in range(count):
                sink.tell({"n": i})
            got = sink.ask("count", timeout=120)
            elapsed = time.perf_counter() - start
            assert got == count, (got, count)
            return count / elapsed

        def asks(count: int) -> float:
            ref = client.ref("echo-inline")
            ref.ask(None, timeout=10)
            window: collections.deque[Any] = collections.deque()
            start = time.perf_counter()
            for i in range(count):
                if len(window) >= WINDOW:
                    window.popleft().get()
                window.append(ref.ask_async({"n": i}, timeout=60))
            for reply in window:
                reply.get()
            return count / (time.perf_counter() - start)

        runs = {
            "sync": lambda a: sync("echo", float(a)),
            "sync-inline": lambda a: sync("echo-inline", float(a)),
            "sync-retries": lambda a: sync("echo", float(a), retries=2),
            "tells": lambda a: tells(int(a)),
            "asks": lambda a: asks(int(a)),
        }
        print("ready", flush=True)
        for line in sys.stdin:
            case, amount = line.split()
            print(runs[case](amount), flush=True)


# --- the driver -----------------------------------------------------------------


class Variant:
    """One node process and one caller process, both from ``tree``."""

    def __init__(
        self, label: str, tree: Path, etcd: str, otel: str | None, ratio: float | None = None
    ) -> None:
        self.label = label
        cluster = "tracing-" + label.replace("%", "pct")
        env = {**os.environ, "PYTHONPATH": str(tree)}
        node = [sys.executable, "-m", "taskmesh", "node", "--cluster", cluster, "--etcd", etcd,
                "--name", cluster, "--app", "benchmarks.remote_apps:setup",
                "--log-level", "WARNING"]  # fmt: skip
        if otel is not None:
            node += ["--otel-endpoint", otel]
        self.node = subprocess.Popen(node, stdout=subprocess.PIPE, text=True, cwd=tree, env=env)
        self.caller: subprocess.Popen[str] | None = None
        assert self.node.stdout is not None
        if not any(line.strip() == "taskmesh: ready" for line in self.node.stdout):
            raise RuntimeError(f"the {label} node did not start")
        command = [sys.executable, __file__, "--caller", "--etcd", etcd, "--cluster", cluster]
        if otel is not None:
            command += ["--otel", otel]
        if ratio is not None:
            command += ["--ratio", str(ratio)]
        self.caller = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd="/"
        )
        assert self.caller.stdout is not None
        if self.caller.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the {label} caller did not start")

    def run(self, case: str, amount: float) -> float:
        assert self.caller is not None and self.caller.stdin and self.caller.stdout
        self.caller.stdin.write(f"{case} {amount}\n")
        self.caller.stdin.flush()
        answer = self.caller.stdout.readline()
        if not answer:
            raise RuntimeError(f"the {self.label} caller died on {case}")
        return float(answer)

    def close(self) -> None:
        for proc in (self.caller, self.node):
            if proc is None:
                continue
            if proc.stdin is not None:
                proc.stdin.close()  # the caller's end of input: it disconnects and exits
            try:
                proc.wait(5 if proc is self.caller else 0.1)
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.wait(30)
            if proc.stdout is not None:
                proc.stdout.close()


def run(etcd: str, *, baseline: Path | None, rounds: int, seconds: float, count: int) -> None:
    """Start the variants, alternate them round by round, print the rows."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks.remote_servers import start_server

    sink_proc, (sink,) = start_server(["otlp"])
    variants: list[Variant] = []
    try:
        if baseline is not None:
            variants.append(Variant("main", baseline, etcd, None))
        variants.append(Variant("off", ROOT, etcd, None))
        if baseline is not None:
            variants.append(Variant("off2", ROOT, etcd, None))
        variants.append(Variant("on", ROOT, etcd, sink))
        variants.append(Variant("1%", ROOT, etcd, sink, ratio=0.01))
        for variant in variants:  # warm up each caller and node
            variant.run("sync", 0.2)
        for case, what, unit in CASES:
            amount: float = seconds if case.startswith("sync") else count
            n_rounds = rounds * 4 if case.startswith("sync") else rounds
            if case == "asks":
                amount = count // 4
            rates: dict[str, list[float]] = {v.label: [] for v in variants}
            for _ in range(n_rounds):
                for variant in variants:
                    rates[variant.label].append(variant.run(case, amount))
            medians = {label: statistics.median(values) for label, values in rates.items()}
            off = medians["off"]
            cells = "  ".join(f"{label} {value:>8,.0f}" for label, value in medians.items())
            ratios = f"on/off {medians['on'] / off:.2f}  1%/off {medians['1%'] / off:.2f}"
            if "main" in medians:
                noise = medians["off2"] / off
                ratios = f"off/main {off / medians['main']:.2f} (off2/off {noise:.2f})  " + ratios
            print(f"tracing: {what:38s} {cells} {unit:14s} {ratios}", flush=True)
    finally:
        for variant in variants:
            variant.close()
        sink_proc.terminate()
        sink_proc.wait(10)
        for stream in (sink_proc.stdin, sink_proc.stdout):
            if stream is not None:
                stream.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="a tree of the commit to compare with")
    parser.add_argument("--quick", action="store_true", help="small counts, one round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--caller", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--etcd", help=argparse.SUPPRESS)
    parser.add_argument("--cluster", help=argparse.SUPPRESS)
    parser.add_argument("--otel", help=argparse.SUPPRESS)
    parser.add_argument("--ratio", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.caller:
        caller(args.etcd, args.cluster, args.otel, args.ratio)
        return
    sys.path.insert(0, str(ROOT))
    from taskmesh.cluster import EmbeddedEtcd

    etcd = EmbeddedEtcd().start()
    try:
        run(
            etcd.endpoint,
            baseline=args.baseline.resolve() if args.baseline else None,
            rounds=1 if args.quick else args.rounds,
            seconds=0.5 if args.quick else 0.3,
            count=5_000 if args.quick else 50_000,
        )
    finally:
        etcd.stop(remove_data=True)


if __name__ == "__main__":
    main()
