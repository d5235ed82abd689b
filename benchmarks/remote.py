"""Remote messaging through the public API, against raw pyzmq + msgpack.

Run from the repository root::

    .venv/bin/python benchmarks/remote.py            # a few minutes
    .venv/bin/python benchmarks/remote.py --quick    # a smoke run
    .venv/bin/python benchmarks/remote.py --only sync

What runs: an etcd (embedded, started here), one ``taskmesh node`` process
hosting the actors of ``benchmarks/remote_apps.py``, and in this process a
client made with ``taskmesh.connect``. Every taskmesh figure goes through
the public API that users call (``client.ask``, ``client.ref(n)``,
``client.capability(c)``, and with ``--node`` also ``node.ref(n)`` from a
``taskmesh.Node`` in this process). Beside each one, raw pyzmq + msgpack
does the same exchange between two processes (the physical limit of this
stack), alternating round by round, and the ratio of the medians is
printed: the machines are shared and noisy, so only ratios from one run
mean much. Names follow Ray's microbenchmarks:

- ``1_1_actor_calls_sync``: one caller, one actor, ask and wait, repeat
  (round trips/s), to an ordinary (threaded) actor, an ``inline`` actor,
  by name and by capability;
- ``1_1_actor_calls_async``: pipelined tells (messages/s, until the actor
  has counted them all) and pipelined asks (a window of asks in flight);
- ``n_n_actor_calls_async``: several caller threads, several actors,
  pipelined asks spread over all of them.

Then the ``tracing:`` rows (``benchmarks/remote_tracing.py``; skip them
with ``--no-tracing``): the same exchanges with tracing off, on, and on
sampling 1%, and with ``--baseline DIR`` the main line's code beside them.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import taskmesh  # noqa: E402
from benchmarks import remote_tracing  # noqa: E402
from benchmarks.remote_servers import start_server  # noqa: E402
from taskmesh.cluster import EmbeddedEtcd  # noqa: E402

WINDOW = 1000
TELLS = "1_1_actor_calls_async (tells)"
CLUSTER = "bench"


# --- raw pyzmq + msgpack (the client side; the server is remote_servers.raw) ---


class Raw:
    def __init__(self, endpoints: list[str]) -> None:
        self.ctx = zmq.Context()
        self.endpoints = endpoints

    def _dealer(self, endpoint: str) -> zmq.Socket[bytes]:
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 100_000)  # a full ROUTER pipe drops silently:
        sock.setsockopt(zmq.RCVHWM, 100_000)  # keep raw's window well under the marks
        sock.connect(endpoint)
        return sock

    def sync(self, seconds: float) -> float:
        sock = self._dealer(self.endpoints[0])
        packb, unpackb = msgpack.packb, msgpack.unpackb
        n = 0
        sock.send(packb([1, {"n": -1}]))
        sock.recv()
        start = time.perf_counter()
        end = start + seconds
        while True:
            for _ in range(100):
                sock.send(packb([1, {"n": n}]))
                unpackb(sock.recv())
                n += 1
            now = time.perf_counter()
            if now >= end:
                break
        sock.close()
        return n / (now - start)

    def tells(self, count: int) -> float:
        sock = self._dealer(self.endpoints[0])
        packb = msgpack.packb
        sock.send(packb([1, None]))
        sock.recv()
        start = time.perf_counter()
        for i in range(count):
            sock.send(packb([0, {"n": i}]))
        sock.send(packb([2, None]))
        got = msgpack.unpackb(sock.recv())
        elapsed = time.perf_counter() - start
        sock.close()
        assert got == count, (got, count)
        return count / elapsed

    def _pipelined(self, socks: list[zmq.Socket[bytes]], count: int) -> None:
        packb, unpackb = msgpack.packb, msgpack.unpackb
        poller = zmq.Poller()
        for sock in socks:
            poller.register(sock, zmq.POLLIN)
        sent = received = 0
        k = len(socks)
        while sent < min(WINDOW, count):
            socks[sent % k].send(packb([1, {"n": sent}]))
            sent += 1
        while received < count:
            for sock, _ in poller.poll():
                while True:
                    try:
                        unpackb(sock.recv(zmq.NOBLOCK))
                    except zmq.Again:
                        break
                    received += 1
                    if sent < count:
                        socks[sent % k].send(packb([1, {"n": sent}]))
                        sent += 1

    def asks(self, count: int) -> float:
        sock = self._dealer(self.endpoints[0])
        sock.send(msgpack.packb([1, None]))
        sock.recv()
        start = time.perf_counter()
        self._pipelined([sock], count)
        elapsed = time.perf_counter() - start
        sock.close()
        return count / elapsed

    def n_n(self, senders: int, count: int) -> float:
        groups = [[self._dealer(e) for e in self.endpoints] for _ in range(senders)]
        for socks in groups:
            for sock in socks:
                sock.send(msgpack.packb([1, None]))
                sock.recv()

        def run(socks: list[zmq.Socket[bytes]]) -> None:
            self._pipelined(socks, count)

        threads = [threading.Thread(target=run, args=(socks,)) for socks in groups]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        for socks in groups:
            for sock in socks:
                sock.close()
        return senders * count / elapsed

    def close(self) -> None:
        self.ctx.term()


# --- taskmesh, through the public API -------------------------------------------


def start_node(etcd: str) -> subprocess.Popen[str]:
    """A ``taskmesh node`` process hosting the benchmark's actors; waits for ready."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskmesh", "node", "--cluster", CLUSTER, "--etcd", etcd,
         "--name", "bench-server", "--app", "benchmarks.remote_apps:setup",
         "--log-level", "WARNING"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "taskmesh: ready":
            return proc
    proc.kill()
    raise RuntimeError("the taskmesh node did not start")


Asker = Callable[[Any], Any]


class Public:
    """The caller side: a client (and optionally a node) of the cluster."""

    def __init__(self, etcd: str, with_node: bool) -> None:
        self.client = taskmesh.connect(etcd=etcd, cluster=CLUSTER)
        self.node = (
            taskmesh.Node(cluster=CLUSTER, etcd=etcd, name="bench-caller").start()
            if with_node
            else None
        )
        deadline = time.monotonic() + 30
        while "sink" not in self.client.actors() or not self.client.routes().get("echo"):
            if time.monotonic() > deadline:
                raise RuntimeError("the node's actors did not appear")
            time.sleep(0.05)

    def sync(self, ask: Asker, seconds: float) -> float:
        ask({"n": -1})
        n = 0
        start = time.perf_counter()
        end = start + seconds
        while True:
            for _ in range(100):
                ask({"n": n})
                n += 1
            now = time.perf_counter()
            if now >= end:
                break
        return n / (now - start)

    def tells(self, count: int) -> float:
        sink = self.client.ref("sink")
        sink.ask("reset", timeout=10)
        start = time.perf_counter()
        for i in range(count):
            sink.tell({"n": i})
        got = sink.ask("count", timeout=60)
        elapsed = time.perf_counter() - start
        assert got == count, (got, count)
        return count / elapsed

    def _pipelined(self, refs: list[Any], count: int) -> None:
        window: collections.deque[Any] = collections.deque()
        k = len(refs)
        for i in range(count):
            if len(window) >= WINDOW:
                window.popleft().get()
            window.append(refs[i % k].ask_async({"n": i}, timeout=60))
        for reply in window:
            reply.get()

    def asks(self, count: int) -> float:
        ref = self.client.ref("echo-inline")
        ref.ask(None, timeout=10)
        start = time.perf_counter()
        self._pipelined([ref], count)
        return count / (time.perf_counter() - start)

    def n_n(self, senders: int, count: int) -> float:
        refs = [self.client.ref(f"echo{i}") for i in range(senders)]
        threads = [
            threading.Thread(target=self._pipelined, args=(refs, count)) for _ in range(senders)
        ]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return senders * count / (time.perf_counter() - start)

    def close(self) -> None:
        self.client.close()
        if self.node is not None:
            self.node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, one round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", help="run only the cases whose name contains this")
    parser.add_argument("--node", action="store_true", help="also ask from a Node in this process")
    parser.add_argument("--no-tracing", action="store_true", help="skip the tracing rows")
    parser.add_argument("--baseline", type=Path, help="tracing rows: a tree of the main line")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    scale = 0.1 if args.quick else 1.0
    seconds = 0.5 if args.quick else 0.3
    tells, asks, n_n = int(200_000 * scale), int(50_000 * scale), int(10_000 * scale)

    etcd = EmbeddedEtcd().start()
    raw_proc, raw_endpoints = start_server(["raw", "4"])
    node_proc = start_node(etcd.endpoint)
    raw = Raw(raw_endpoints)
    public = Public(etcd.endpoint, args.node)
    results: dict[str, tuple[float, float, str]] = {}
    try:

        def pair(
            name: str,
            unit: str,
            raw_fn: Callable[[], float],
            tm_fn: Callable[[], float],
            n_rounds: int = 0,
        ) -> None:
            if args.only and args.only not in name:
                return
            raws, tms = [], []
            for _ in range(n_rounds or rounds):
                raws.append(raw_fn())
                tms.append(tm_fn())
            best_raw, best_tm = statistics.median(raws), statistics.median(tms)
            results[name] = (best_raw, best_tm, unit)
            print(
                f"{name:58s} raw {best_raw:>9,.0f}  taskmesh {best_tm:>9,.0f} {unit:14s}"
                f" ratio {best_tm / best_raw:.2f}",
                flush=True,
            )

        print(
            f"python {sys.version.split()[0]}, pyzmq {zmq.__version__}, libzmq "
            f"{zmq.zmq_version()}, {os.cpu_count()} cpus",
            flush=True,
        )
        client = public.client
        sync_rounds = rounds * 4
        sync_cases: list[tuple[str, Asker]] = [
            ("client.ask(name), threaded actor",
             lambda m: client.ask("echo", m, timeout=10)),
            ("client.ask(name), inline actor",
             lambda m: client.ask("echo-inline", m, timeout=10)),
            ("client.capability(cap).ask, threaded actor",
             lambda m: client.capability("echo").ask(m, timeout=10)),
            ("client.capability(cap).ask, inline actor",
             lambda m: client.capability("echo-inline").ask(m, timeout=10)),
            ("client.ask(name, retries=2), threaded actor",
             lambda m: client.ask("echo", m, timeout=10, retries=2)),
        ]  # fmt: skip
        node = public.node
        if node is not None:
            sync_cases += [
                ("node.ref(name).ask, threaded actor",
                 lambda m: node.ref("echo").ask(m, timeout=10)),
                ("node.capability(cap).ask, inline actor",
                 lambda m: node.capability("echo-inline").ask(m, timeout=10)),
            ]  # fmt: skip
        for label, ask in sync_cases:
            pair(
                f"1_1_actor_calls_sync: {label}",
                "round trips/s",
                lambda: raw.sync(seconds),
                lambda ask=ask: public.sync(ask, seconds),  # type: ignore[misc]
                sync_rounds,
            )
        pair(TELLS, "messages/s", lambda: raw.tells(tells), lambda: public.tells(tells))
        pair(
            "1_1_actor_calls_async (asks)",
            "asks/s",
            lambda: raw.asks(asks),
            lambda: public.asks(asks),
        )
        pair(
            "n_n_actor_calls_async (4x4 asks)",
            "asks/s",
            lambda: raw.n_n(4, n_n),
            lambda: public.n_n(4, n_n),
        )
        if not args.no_tracing and (not args.only or args.only in "tracing:"):
            remote_tracing.run(
                etcd.endpoint,
                baseline=args.baseline.resolve() if args.baseline else None,
                rounds=rounds,
                seconds=seconds,
                count=tells // 4,
            )
    finally:
        public.close()
        raw.close()
        node_proc.terminate()
        node_proc.wait(30)
        if node_proc.stdout is not None:
            node_proc.stdout.close()
        raw_proc.terminate()
        raw_proc.wait(10)
        for stream in (raw_proc.stdin, raw_proc.stdout):
            if stream is not None:
                stream.close()
        etcd.stop(remove_data=True)
    targets = [
        ("1_1_actor_calls_sync: client.ask(name), threaded actor", "sync ask, threaded", 0.65),
        ("1_1_actor_calls_sync: client.ask(name), inline actor", "sync ask, inline", 0.75),
        (TELLS, "pipelined tells", 0.5),
    ]
    for key, label, target in targets:
        if key in results:
            ratio = results[key][1] / results[key][0]
            verdict = "ok" if ratio >= target else "MISSED"
            print(f"target: {label} >= {target:.2f}x raw: {ratio:.2f}x {verdict}")
    by_name = results.get("1_1_actor_calls_sync: client.ask(name), threaded actor")
    by_cap = results.get("1_1_actor_calls_sync: client.capability(cap).ask, threaded actor")
    if by_name and by_cap:
        print(f"target: by capability within 10% of by name: {by_cap[1] / by_name[1]:.2f}x")


if __name__ == "__main__":
    main()
