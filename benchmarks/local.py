"""Local throughput: taskmesh actors against bare pykka doing the same work.

Run:  python benchmarks/local.py [--tells N] [--asks N] [--rounds R]

Both sides run in this one process, interleaved round by round, so machine
noise hits both alike; the figure that matters is the ratio. "tells" is the
time for N tells plus one final ask that waits until all were handled;
"asks" is N sequential ask round trips from one caller thread.

Flow control (a tell to a full mailbox waits for room) is measured twice:
with a mailbox big enough that it is never full, ``tell()`` against
``tell(block=False)`` (the behaviour before flow control: what the check
costs when nothing is full); and with the default 10,000-message mailbox,
where the producer outruns the actor and waits, against pykka's unbounded
inbox (every tell arrives in both).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import pykka

import taskmesh


class PykkaEcho(pykka.ThreadingActor):  # type: ignore[misc]
    """Counts what it handles; an ask of -1 answers (and resets) the count."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def on_receive(self, message: Any) -> Any:
        if message == -1:
            count, self.count = self.count, 0
            return count
        self.count += 1
        return message


class Echo(taskmesh.Actor):
    """The same actor on taskmesh."""

    def __init__(self) -> None:
        self.count = 0

    def receive(self, message: Any) -> Any:
        if message == -1:
            count, self.count = self.count, 0
            return count
        self.count += 1
        return message


def bench_tells(tell: Callable[..., None], ask: Callable[[Any], Any], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        tell(i)
    handled = ask(-1)
    elapsed = time.perf_counter() - start
    if handled != n:
        raise SystemExit(f"only {handled} of {n} tells were handled")
    return n / elapsed


def bench_asks(ask: Callable[[Any], Any], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        ask(i)
    elapsed = time.perf_counter() - start
    ask(-1)
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tells", type=int, default=200_000)
    parser.add_argument("--asks", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()

    pref = PykkaEcho.start()
    system = taskmesh.ActorSystem(mailbox_size=opts.tells + 10)
    tref = system.spawn(Echo, name="echo")
    bounded = system.spawn(Echo, name="bounded", mailbox_size=10_000)

    def pykka_ask(m: Any) -> Any:
        return pref.ask(m, timeout=30)

    def tm_ask(m: Any) -> Any:
        return tref.ask(m, timeout=30)

    def bounded_ask(m: Any) -> Any:
        return bounded.ask(m, timeout=30)

    def shed(m: Any) -> None:  # the behaviour before flow control
        tref.tell(m, block=False)

    def wait(m: Any) -> None:  # the same call shape, waiting for room if full
        tref.tell(m)

    results: dict[str, list[float]] = {k: [] for k in ("pt", "tt", "tw", "ts", "tb", "pa", "ta")}
    try:
        for round_ in range(opts.rounds):
            results["pt"].append(bench_tells(pref.tell, pykka_ask, opts.tells))
            results["tt"].append(bench_tells(tref.tell, tm_ask, opts.tells))
            pair = [("tw", wait), ("ts", shed)]  # the two compared rows, alternating
            for key, tell in pair if round_ % 2 else reversed(pair):
                results[key].append(bench_tells(tell, tm_ask, opts.tells))
            results["tb"].append(bench_tells(bounded.tell, bounded_ask, opts.tells))
            results["pa"].append(bench_asks(pykka_ask, opts.asks))
            results["ta"].append(bench_asks(tm_ask, opts.asks))
    finally:
        pref.stop()
        system.stop()

    med = {k: statistics.median(v) for k, v in results.items()}

    def row(label: str, base: str, other: str) -> None:
        ratio = med[other] / med[base]
        print(f"{label:<44}{med[base]:>12,.0f}{med[other]:>14,.0f}{ratio:>8.2f}")

    print(f"{'benchmark':<44}{'baseline/s':>12}{'taskmesh/s':>14}{'ratio':>8}")
    row("local tell (pykka | taskmesh)", "pt", "tt")
    row("local ask, sync (pykka | taskmesh)", "pa", "ta")
    row("tell, never full (block=False | blocking)", "ts", "tw")
    row("tell, 10k mailbox waits (pykka | taskmesh)", "pt", "tb")
    print(f"(median of {opts.rounds} interleaved rounds; every tell arrived in every row)")


if __name__ == "__main__":
    main()
