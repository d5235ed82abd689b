"""Remote messaging between two processes on loopback: taskmesh vs raw pyzmq.

Run from the repository root::

    .venv/bin/python benchmarks/remote.py            # about a minute
    .venv/bin/python benchmarks/remote.py --quick    # a smoke run

Each figure is measured beside raw pyzmq + msgpack doing the same exchange
between the same two kinds of process, and printed as a ratio, because the
machines are shared and noisy: only ratios from one run mean much. Names
follow Ray's microbenchmarks:

- ``1_1_actor_calls_sync``: one caller, one actor, ask and wait, repeat
  (round trips/s);
- ``1_1_actor_calls_async``: pipelined tells (messages/s, until the actor
  has counted them all) and pipelined asks (a window of asks in flight);
- ``n_n_actor_calls_async``: several caller threads, several actors,
  pipelined asks spread over all of them.

The receiving process hosts real taskmesh actors (``ActorSystem``) unless
``--actors emulated`` is given, in which case each "actor" is a thread
reading a ``queue.SimpleQueue``. Each case runs ``--rounds`` times (the
sync case four times as many, in short slices), alternating raw and
taskmesh, and the median of each is reported.

The echo actors are inline actors (``inline = True``: a remote message that
finds them idle runs on the I/O thread); the ``threaded actor`` row asks an
ordinary actor, which runs on its own thread.

Figures (2026-11-23, the shared 2-core VM, Python 3.11.7, pyzmq 27.3,
libzmq 4.3.5, real ActorSystem actors; fifteen runs of the sync case, six
of the rest; the spread is the machine's)::

    1_1_actor_calls_sync          raw 5.6k-7.9k rt/s    taskmesh 3.7k-5.3k   0.60-0.68x
      (threaded actor)            raw 5.7k-7.7k rt/s    taskmesh 3.2k-4.2k   0.51-0.59x
    1_1_actor_calls_async tells   raw 280k-332k msg/s   taskmesh 548k-783k   1.9-2.6x
    1_1_actor_calls_async asks    raw 98k-139k asks/s   taskmesh 129k-156k   1.0-1.3x
    n_n_actor_calls_async 4x4     raw 85k-164k asks/s   taskmesh 123k-157k   0.8-1.5x

Pipelined traffic beats raw because the transport batches: one frame and
one ``send`` per burst, one ``unpackb`` per frame. A sync ask cannot
batch. Done naively it pays four thread hand-offs raw does not (caller ->
I/O thread -> actor -> I/O thread -> caller), each a wake-up of a sleeping
thread. On this VM that costs 20-25 us, and the code that runs next starts
with cold caches. The receiving side's Python costs 3.7 us per ask in a
warm loop, but about 30 us when woken for each one. So the lever is
wake-ups, not micro-optimisation. Two measures remove them:

- the asking thread borrows the peer link's socket when it is free, sends
  the ask and reads the answer itself (``Transport._lead``; 0.56-0.62x ->
  0.60-0.68x with an inline actor);
- an inline actor runs a remote message on the I/O thread when idle
  (``Actor.inline``; about +0.07x, the threaded row).

Tried and not kept: a pipe instead of a lock to wake the caller (slower),
replies to a socket owned by the calling thread (no gain), an I/O thread
spinning while a sync ask is pending (no gain), and an ordinary actor
sending its answer on the router itself (no gain in the threaded row).
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
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

from benchmarks.remote_servers import start_server  # noqa: E402
from taskmesh.transport import Transport  # noqa: E402

WINDOW = 1000
TELLS = "1_1_actor_calls_async (tells)"


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


# --- taskmesh -------------------------------------------------------------------


class Mesh:
    def __init__(self, address: str, actors: int) -> None:
        self.transport = Transport(listen=None, max_queue=100_000)
        self.transport.start()
        self.echo = [self.transport.ref(address, f"echo{i}") for i in range(actors)]
        self.sink = self.transport.ref(address, "sink")
        self.threaded = self.transport.ref(address, "threaded")

    def sync(self, seconds: float, threaded: bool = False) -> float:
        ref = self.threaded if threaded else self.echo[0]
        ref.ask({"n": -1}, timeout=10)
        n = 0
        start = time.perf_counter()
        end = start + seconds
        while True:
            for _ in range(100):
                ref.ask({"n": n}, timeout=10)
                n += 1
            now = time.perf_counter()
            if now >= end:
                break
        return n / (now - start)

    def tells(self, count: int) -> float:
        sink = self.sink
        sink.ask("reset", timeout=10)
        start = time.perf_counter()
        for i in range(count):
            sink.tell({"n": i})
        got = sink.ask("count", timeout=60)
        elapsed = time.perf_counter() - start
        assert got == count, (got, count, self.transport.snapshot())
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
        self.echo[0].ask(None, timeout=10)
        start = time.perf_counter()
        self._pipelined(self.echo[:1], count)
        return count / (time.perf_counter() - start)

    def n_n(self, senders: int, count: int) -> float:
        threads = [
            threading.Thread(target=self._pipelined, args=(self.echo, count))
            for _ in range(senders)
        ]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return senders * count / (time.perf_counter() - start)

    def close(self) -> None:
        self.transport.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, one round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--actors", choices=["system", "emulated"], default="system")
    parser.add_argument("--n", type=int, default=4, help="senders and actors for n_n")
    parser.add_argument("--only", help="run only the cases whose name contains this")
    parser.add_argument(
        "--pin",
        choices=["none", "split", "same"],
        default="none",
        help="CPU pinning, raw and taskmesh alike: split = senders on the first CPU, "
        "receivers on the last; same = every process on the first CPU",
    )
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    scale = 0.1 if args.quick else 1.0
    seconds = 0.5 if args.quick else 0.3
    tells, asks, n_n = int(200_000 * scale), int(50_000 * scale), int(10_000 * scale)

    cpus = sorted(os.sched_getaffinity(0))
    pin = []
    if args.pin != "none":
        os.sched_setaffinity(0, {cpus[0]})  # before any thread starts: they inherit it
        pin = ["--cpu", str(cpus[-1] if args.pin == "split" else cpus[0])]
    raw_proc, raw_endpoints = start_server(["raw", str(args.n), *pin])
    tm_proc, tm_endpoints = start_server(["taskmesh", str(args.n), args.actors, *pin])
    raw = Raw(raw_endpoints)
    mesh = Mesh(tm_endpoints[0], args.n)
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
                f"{name:42s} raw {best_raw:>10,.0f}  taskmesh {best_tm:>10,.0f} {unit:14s}"
                f" ratio {best_tm / best_raw:.2f}",
                flush=True,
            )

        print(
            f"python {sys.version.split()[0]}, pyzmq {zmq.__version__}, libzmq "
            f"{zmq.zmq_version()}, {os.cpu_count()} cpus, actors: {args.actors}, "
            f"pinning: {args.pin}",
            flush=True,
        )
        sync_rounds = rounds * 4
        pair(
            "1_1_actor_calls_sync",
            "round trips/s",
            lambda: raw.sync(seconds),
            lambda: mesh.sync(seconds),
            sync_rounds,
        )
        if args.actors == "system":
            pair(
                "1_1_actor_calls_sync (threaded actor)",
                "round trips/s",
                lambda: raw.sync(seconds),
                lambda: mesh.sync(seconds, threaded=True),
                sync_rounds,
            )
        pair(
            TELLS,
            "messages/s",
            lambda: raw.tells(tells),
            lambda: mesh.tells(tells),
        )
        pair(
            "1_1_actor_calls_async (asks)",
            "asks/s",
            lambda: raw.asks(asks),
            lambda: mesh.asks(asks),
        )
        pair(
            f"n_n_actor_calls_async ({args.n}x{args.n} asks)",
            "asks/s",
            lambda: raw.n_n(args.n, n_n),
            lambda: mesh.n_n(args.n, n_n),
        )
    finally:
        mesh.close()
        raw.close()
        for proc in (raw_proc, tm_proc):
            proc.terminate()
            proc.wait(10)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
    targets = [("1_1_actor_calls_sync", "sync ask", 0.6), (TELLS, "pipelined tells", 0.5)]
    for key, label, target in targets:
        if key in results:
            ratio = results[key][1] / results[key][0]
            verdict = "ok" if ratio >= target else "MISSED"
            print(f"target: {label} >= {target:.2f}x raw: {ratio:.2f}x {verdict}")


if __name__ == "__main__":
    main()
