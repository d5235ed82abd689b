"""Limits against a real etcd, with several limiters in one process standing
in for several nodes: the rate is shared, slots are never over-issued and
go back to a waiting holder, senders time out cleanly, async senders never
block, a removed limit lets its waiters through. (A dead node's slots:
tests/integration/platform/test_limits_live.py.)"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

import taskmesh
from taskmesh.actors.deadletters import DeadLetters
from taskmesh.addressing import CapabilityRef, Gate, Located
from taskmesh.cluster.etcd import EtcdClient, LeaseKeeper
from taskmesh.errors import ConfigError, LimitTimeout
from taskmesh.ops.latency import LatencyHistogram
from taskmesh.platform.limiter import Limiter
from taskmesh.platform.limits import Limit, LimitStore
from taskmesh.platform.records import PlatformKeys
from tests.waiting import wait_until


class Meter:
    """Counts the asks in flight at the holders, per key, and the peaks."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now: dict[Any, int] = {}
        self.peak: dict[Any, int] = {}
        self.done = 0

    def enter(self, key: Any) -> None:
        with self.lock:
            self.now[key] = self.now.get(key, 0) + 1
            self.now["all"] = self.now.get("all", 0) + 1
            for k in (key, "all"):
                self.peak[k] = max(self.peak.get(k, 0), self.now[k])

    def leave(self, key: Any) -> None:
        with self.lock:
            self.now[key] -= 1
            self.now["all"] -= 1
            self.done += 1


class Busy(taskmesh.Actor):
    """Holds each ask for ``message["hold"]`` seconds, metered."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter

    def receive(self, message: Any) -> Any:
        key = message.get("key") if isinstance(message, dict) else None
        self.meter.enter(key)
        try:
            threading.Event().wait(message.get("hold", 0) if isinstance(message, dict) else 0)
        finally:
            self.meter.leave(key)
        return message


class Process:
    """What a node gives its refs: routes to the shared actors, and a
    limiter of its own (its own etcd client and lease), like a real node."""

    ask_timeout = 10.0
    tracing = None

    def __init__(self, etcd: str, cluster: str, holder: str, holders: list[Located]) -> None:
        self.holders = holders
        self.turn = itertools.count()
        self.dead_letters = DeadLetters()
        self.ask_latency = LatencyHistogram()
        self.limits: dict[str, Gate] = {}
        self.client = EtcdClient([etcd])
        self.limiter = Limiter(
            client=self.client,
            keys=PlatformKeys(cluster),
            holder=holder,
            lease=LeaseKeeper(self.client, 2),
            own_lease=True,
            dead_letters=self.dead_letters,
            send_timeout=10.0,
            ask_timeout=10.0,
            gates=self.limits,
        ).start(wait=10.0)

    def resolve(self, name: str) -> Located | None:
        return None

    def route(
        self, capability: str, strategy: str, key: str | None, exclude: frozenset[str]
    ) -> list[Located]:
        if capability == "one":
            return self.holders[:1]
        return [self.holders[next(self.turn) % len(self.holders)]]

    def reachable(self, node: str) -> bool:
        return True

    def capability(self, name: str) -> CapabilityRef:
        return CapabilityRef(self, name)

    def close(self) -> None:
        self.limiter.stop()
        self.client.close()


@pytest.fixture
def world(etcd_url: str) -> Iterator[tuple[LimitStore, Meter, list[Process]]]:
    cluster = "t" + uuid.uuid4().hex[:8]
    meter = Meter()
    with ExitStack() as stack:
        system = taskmesh.ActorSystem(ask_timeout=10.0)
        stack.callback(system.stop)
        holders: list[Located] = [
            ("n", system.spawn(Busy, meter, name=f"busy-{i}")) for i in range(12)
        ]
        processes = []
        for name in ("p1", "p2", "p3"):
            process = Process(etcd_url, cluster, name, holders)
            stack.callback(process.close)
            processes.append(process)
        client = EtcdClient([etcd_url])
        stack.callback(client.close)
        yield LimitStore(client, PlatformKeys(cluster)), meter, processes


def limited(processes: list[Process], capability: str) -> None:
    wait_until(lambda: all(capability in p.limits for p in processes), timeout=10.0)


def test_rates_and_slots_are_shared_by_every_limiter_and_never_over_issued(
    world: tuple[LimitStore, Meter, list[Process]],
) -> None:
    store, meter, processes = world
    store.put(Limit("work", rate=100.0, burst=5))
    store.put(Limit("gpu", concurrency=3))
    store.put(Limit("billing", concurrency=1, per_key=True))
    for capability in ("work", "gpu", "billing"):
        limited(processes, capability)

    # the rate is shared: six senders on three limiters, 2 s
    sent = [0] * 6
    stop = time.monotonic() + 2.0

    def send(i: int) -> None:
        ref = processes[i % 3].capability("work")
        while time.monotonic() < stop:
            ref.ask({}, timeout=10.0) if i % 2 else ref.tell({})
            sent[i] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rate = (sum(sent) - 5) / (time.monotonic() - started)
    # Never over the limit, however the machine is loaded. How close to it
    # the senders get depends on the load (etcd's disk syncs: 21/s seen with
    # the suite's other workers running), so only a stall fails the floor;
    # benchmarks/limits.py measures how close (199.9/s against 200/s).
    assert rate <= 110, f"{rate:.1f} messages/s against a limit of 100/s"
    assert rate >= 5, f"{rate:.1f} messages/s: the tokens stalled"
    assert all(sent), "every limiter got tokens"

    # concurrency: 9 senders on three limiters, never more than 3 in flight
    def ask_gpu(i: int) -> None:
        for _ in range(4):
            processes[i % 3].capability("gpu").ask({"hold": 0.03}, timeout=20.0)

    threads = [threading.Thread(target=ask_gpu, args=(i,)) for i in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert meter.peak["all"] == 3

    # per key: one in flight per customer, customers side by side
    meter.peak.clear()

    def ask_billing(i: int) -> None:
        customer = f"customer-{i % 2}"
        for _ in range(3):
            processes[i % 3].capability("billing").ask(
                {"hold": 0.03, "key": customer}, key=customer, timeout=20.0
            )

    threads = [threading.Thread(target=ask_billing, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert meter.peak["customer-0"] == meter.peak["customer-1"] == 1
    assert meter.peak["all"] == 2
    with pytest.raises(ConfigError, match="pass key="):
        processes[0].capability("billing").ask({}, timeout=1.0)

    # slots held elsewhere are not over-issued, and come back once used
    p1, p2 = processes[0], processes[1]
    for _ in range(3):
        p1.capability("gpu").ask_async({"hold": 1.5}, timeout=20.0)
    wait_until(lambda: meter.now.get(None) == 3, timeout=10.0)
    with pytest.raises(LimitTimeout):
        p2.capability("gpu").ask({}, timeout=0.5)
    assert p2.capability("gpu").ask({"hold": 0}, timeout=15.0) == {"hold": 0}
    assert meter.peak["all"] == 3


def test_senders_time_out_cleanly_and_async_senders_do_not_block(
    world: tuple[LimitStore, Meter, list[Process]],
) -> None:
    store, _, processes = world
    process = processes[0]
    process.limiter.send_timeout = 0.3
    store.put(Limit("one", rate=1.0))
    limited([process], "one")
    ref = process.capability("one")
    ref.tell("first")  # the bucket's one token
    with pytest.raises(LimitTimeout, match=r"within 0\.3 s"):
        ref.tell("second")
    assert process.dead_letters.counts() == {"limited": 1}
    with pytest.raises(LimitTimeout):
        ref.ask({}, timeout=0.2)

    async def from_a_loop() -> tuple[Any, float]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.ensure_future(tick())
        started = time.monotonic()
        reply = ref.ask_async({"n": 1}, timeout=5.0)  # returns at once, sends later
        returned = time.monotonic() - started
        answer = await reply
        ticker.cancel()
        assert ticks >= 10, "the loop ran while the ask waited for its token"
        return answer, returned

    answer, returned = asyncio.run(from_a_loop())
    assert answer == {"n": 1} and returned < 0.1

    # removing the limit lets a waiting sender through at once
    waiting = ref.ask_async({"n": 2}, timeout=30.0)
    store.remove("one")
    assert waiting.get(5.0) == {"n": 2}
    wait_until(lambda: "one" not in process.limits, timeout=5.0)
    assert [ref.ask({"n": i}, timeout=5.0) for i in range(20)] == [{"n": i} for i in range(20)]
