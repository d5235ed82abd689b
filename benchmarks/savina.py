"""Savina-style workloads: async actors, threaded actors and bare pykka, side by side.

Run:  python benchmarks/savina.py [--rounds R] [--scale S]

Each workload (sizes scaled down from the Savina suite for a 2-core
machine; ``--scale`` multiplies the message counts) is written once as a
behaviour whose handler only tells; it runs as taskmesh async actors
(``async def receive``, on the event loop), taskmesh threaded actors
(``def receive``, a thread each) and bare pykka ``ThreadingActor``s, in
one process, interleaved round by round. Printed: the median time per
workload and kind, and each kind's speed relative to async actors
(``> 1``: async actors are that many times faster).

- ping-pong: two actors bounce a message N times;
- counting: one actor tells another N increments;
- thread ring: a token goes N hops around a ring of 100 actors;
- fork-join: the main thread tells N messages round robin to 40 actors;
- big: 40 actors each exchange N/40 ping/pong pairs with random peers;
- chameneos: 20 creatures meet N times through one broker.

Mailboxes are made big enough that no tell waits for room: this measures
message passing, not flow control.
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import pykka

import taskmesh

KINDS = ("async", "thread", "pykka")


class Behavior:
    """An actor's logic for any kind: ``setup`` takes the spawn arguments,
    ``handle`` one message; ``me()`` is the actor's own ref."""

    def setup(self, *args: Any) -> None: ...

    def handle(self, message: Any) -> None: ...

    def me(self) -> Any:
        raise NotImplementedError


_made: dict[tuple[str, type], type] = {}


def adapt(kind: str, behavior: type[Behavior]) -> type:
    """The actor class running ``behavior`` as ``kind``."""
    made = _made.get((kind, behavior))
    if made is not None:
        return made
    adapted: type
    if kind == "pykka":

        class PykkaActor(behavior, pykka.ThreadingActor):  # type: ignore[valid-type, misc]
            def __init__(self, *args: Any) -> None:
                pykka.ThreadingActor.__init__(self)
                self.setup(*args)

            def me(self) -> Any:
                return self.actor_ref

            def on_receive(self, message: Any) -> None:
                self.handle(message)

        adapted = PykkaActor
    elif kind == "thread":

        class ThreadActor(behavior, taskmesh.Actor):  # type: ignore[valid-type, misc]
            def __init__(self, *args: Any) -> None:
                self.setup(*args)

            def me(self) -> Any:
                return self.ref

            def receive(self, message: Any) -> None:
                self.handle(message)

        adapted = ThreadActor
    else:

        class AsyncActor(behavior, taskmesh.Actor):  # type: ignore[valid-type, misc]
            def __init__(self, *args: Any) -> None:
                self.setup(*args)

            def me(self) -> Any:
                return self.ref

            async def receive(self, message: Any) -> None:
                self.handle(message)

        adapted = AsyncActor
    _made[(kind, behavior)] = adapted
    return adapted


class Runtime:
    """Spawns actors of one kind and stops them all afterwards."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.system = None if kind == "pykka" else taskmesh.ActorSystem(mailbox_size=2_000_000)

    def spawn(self, behavior: type[Behavior], *args: Any) -> Any:
        actor = adapt(self.kind, behavior)
        if self.system is None:
            return actor.start(*args)
        return self.system.spawn(actor, *args)

    def close(self) -> None:
        if self.system is None:
            pykka.ActorRegistry.stop_all()
        else:
            self.system.stop()


# --- the workloads ------------------------------------------------------------------


class Pinger(Behavior):
    def setup(self, n: int, done: threading.Event) -> None:
        self.left, self.done = n, done

    def handle(self, message: Any) -> None:
        if message[0] == "start":
            self.pong = message[1]
        else:
            self.left -= 1
            if self.left == 0:
                self.done.set()
                return
        self.pong.tell(("ping", self.me()))


class Ponger(Behavior):
    def handle(self, message: Any) -> None:
        message[1].tell(("pong",))


def ping_pong(rt: Runtime, n: int, done: threading.Event) -> Callable[[], None]:
    ping, pong = rt.spawn(Pinger, n, done), rt.spawn(Ponger)
    return lambda: ping.tell(("start", pong))


class Counter(Behavior):
    def setup(self, n: int, done: threading.Event) -> None:
        self.count, self.n, self.done = 0, n, done

    def handle(self, message: Any) -> None:
        self.count += 1
        if self.count == self.n:
            self.done.set()


class Producer(Behavior):
    def setup(self, n: int, counter: Any) -> None:
        self.n, self.counter = n, counter

    def handle(self, message: Any) -> None:
        tell = self.counter.tell
        for i in range(self.n):
            tell(i)


def counting(rt: Runtime, n: int, done: threading.Event) -> Callable[[], None]:
    producer = rt.spawn(Producer, n, rt.spawn(Counter, n, done))
    return lambda: producer.tell("go")


class RingNode(Behavior):
    def setup(self, done: threading.Event) -> None:
        self.done = done
        self.next: Any = None

    def handle(self, message: Any) -> None:
        if message[0] == "next":
            self.next = message[1]
        elif message[1] == 0:
            self.done.set()
        else:
            self.next.tell(("token", message[1] - 1))


def thread_ring(rt: Runtime, n: int, done: threading.Event) -> Callable[[], None]:
    ring = [rt.spawn(RingNode, done) for _ in range(100)]
    for i, node in enumerate(ring):
        node.tell(("next", ring[(i + 1) % len(ring)]))
    return lambda: ring[0].tell(("token", n))


class Sink(Behavior):
    def setup(self, expected: int, done: threading.Event) -> None:
        self.left, self.done = expected, done

    def handle(self, message: Any) -> None:
        self.left -= 1
        if self.left == 0:
            self.done.set()


class Forked(Behavior):
    def setup(self, n: int, sink: Any) -> None:
        self.left, self.sink, self.total = n, sink, 0

    def handle(self, message: Any) -> None:
        self.total += message * message % 7  # a little work per message
        self.left -= 1
        if self.left == 0:
            self.sink.tell("done")


def fork_join(rt: Runtime, n: int, done: threading.Event) -> Callable[[], None]:
    width = 40
    sink = rt.spawn(Sink, width, done)
    workers = [rt.spawn(Forked, n // width, sink) for _ in range(width)]

    def go() -> None:
        for i in range(n // width * width):
            workers[i % width].tell(i)

    return go


class BigWorker(Behavior):
    def setup(self, pings: int, sink: Any, seed: int) -> None:
        self.left, self.sink, self.rng = pings, sink, random.Random(seed)

    def handle(self, message: Any) -> None:
        if message[0] == "peers":
            self.peers = message[1]
        elif message[0] == "ping":
            message[1].tell(("pong",))
        elif message[0] == "pong" or message[0] == "go":
            if self.left == 0:
                self.sink.tell("done")
                return
            self.left -= 1
            self.rng.choice(self.peers).tell(("ping", self.me()))


def big(rt: Runtime, n: int, done: threading.Event) -> Callable[[], None]:
    width = 40
    sink = rt.spawn(Sink, width, done)
    workers = [rt.spawn(BigWorker, n // width, sink, i) for i in range(width)]
    for worker in workers:
        worker.tell(("peers", workers))

    def go() -> None:
        for worker in workers:
            worker.tell(("go",))

    return go


class Mall(Behavior):
    def setup(self, meetings: int, done: threading.Event) -> None:
        self.left, self.done, self.waiting = meetings, done, None

    def handle(self, message: Any) -> None:
        if self.left == 0:
            return
        if self.waiting is None:
            self.waiting = message
            return
        (_, first, first_color), (_, second, second_color) = self.waiting, message
        self.waiting = None
        self.left -= 1
        if self.left == 0:
            self.done.set()
            return
        first.tell(("meet", second_color))
        second.tell(("meet", first_color))


class Chameneo(Behavior):
    def setup(self, mall: Any, color: int) -> None:
        self.mall, self.color = mall, color

    def handle(self, message: Any) -> None:
        if message[0] == "meet":
            self.color = (self.color + message[1]) % 3  # complement of the two colours
        self.mall.tell(("meet", self.me(), self.color))


def chameneos(rt: Runtime, n: int, done: threading.Event) -> Callable[[], None]:
    mall = rt.spawn(Mall, n, done)
    creatures = [rt.spawn(Chameneo, mall, i % 3) for i in range(20)]

    def go() -> None:
        for creature in creatures:
            creature.tell(("go",))

    return go


WORKLOADS: dict[str, tuple[Callable[..., Callable[[], None]], int]] = {
    "ping-pong": (ping_pong, 20_000),
    "counting": (counting, 200_000),
    "thread ring": (thread_ring, 50_000),
    "fork-join": (fork_join, 200_000),
    "big": (big, 40_000),
    "chameneos": (chameneos, 20_000),
}


def run(kind: str, workload: str, scale: float) -> float:
    setup, size = WORKLOADS[workload]
    rt = Runtime(kind)
    done = threading.Event()
    try:
        go = setup(rt, max(1, int(size * scale)), done)
        start = time.perf_counter()
        go()
        if not done.wait(300):
            raise SystemExit(f"{workload} on {kind} did not finish")
        return time.perf_counter() - start
    finally:
        rt.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0)
    opts = parser.parse_args()
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(opts.rounds):
        for workload in WORKLOADS:
            for kind in KINDS:
                times.setdefault((workload, kind), []).append(run(kind, workload, opts.scale))
    print(
        f"{'workload':<13}{'async s':>9}{'thread s':>10}{'pykka s':>9}{'vs thread':>11}{'vs pykka':>10}"
    )
    for workload in WORKLOADS:
        med = {kind: statistics.median(times[(workload, kind)]) for kind in KINDS}
        print(
            f"{workload:<13}{med['async']:>9.3f}{med['thread']:>10.3f}{med['pykka']:>9.3f}"
            f"{med['thread'] / med['async']:>10.2f}x{med['pykka'] / med['async']:>9.2f}x"
        )
    print(f"(median of {opts.rounds} interleaved rounds; 'vs': how many times faster async is)")


if __name__ == "__main__":
    main()
