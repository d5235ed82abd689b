"""Local throughput: taskmesh actors against bare pykka doing the same work.

Run:  python benchmarks/local.py [--tells N] [--asks N] [--rounds R]

Both sides run in this one process, interleaved round by round, so machine
noise hits both alike; the figure that matters is the ratio. "tells" is the
time for N tells plus one final ask that waits until all were handled;
"asks" is N sequential ask round trips from one caller thread.
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


def bench_tells(tell: Callable[[Any], None], ask: Callable[[Any], Any], n: int) -> float:
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

    def pykka_ask(m: Any) -> Any:
        return pref.ask(m, timeout=30)

    def tm_ask(m: Any) -> Any:
        return tref.ask(m, timeout=30)

    results: dict[str, list[float]] = {k: [] for k in ("pt", "tt", "pa", "ta")}
    try:
        for _ in range(opts.rounds):
            results["pt"].append(bench_tells(pref.tell, pykka_ask, opts.tells))
            results["tt"].append(bench_tells(tref.tell, tm_ask, opts.tells))
            results["pa"].append(bench_asks(pykka_ask, opts.asks))
            results["ta"].append(bench_asks(tm_ask, opts.asks))
    finally:
        pref.stop()
        system.stop()

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"{'benchmark':<22}{'pykka/s':>12}{'taskmesh/s':>14}{'ratio':>8}")
    print(f"{'local tell':<22}{med['pt']:>12,.0f}{med['tt']:>14,.0f}{med['tt'] / med['pt']:>8.2f}")
    print(
        f"{'local ask (sync)':<22}{med['pa']:>12,.0f}{med['ta']:>14,.0f}{med['ta'] / med['pa']:>8.2f}"
    )
    print(f"(median of {opts.rounds} interleaved rounds; target: ratio >= 0.80)")


if __name__ == "__main__":
    main()
