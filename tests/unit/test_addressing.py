"""At-least-once asks through refs: when a retry happens, and when it does not."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from taskmesh.actors.deadletters import DeadLetters
from taskmesh.actors.future import Reply
from taskmesh.addressing import CapabilityRef, Located, NamedRef
from taskmesh.errors import AskTimeout
from taskmesh.ops.latency import LatencyHistogram


class Holder:
    """A target that answers at once, or never (a node cut off without a reset)."""

    def __init__(self, node: str, *, silent: bool = False, silent_first: bool = False) -> None:
        self.node = node
        self.silent = silent
        self.silent_first = silent_first
        self.asked: list[tuple[Any, str | None]] = []

    def tell(self, message: Any) -> None:
        raise AssertionError("not used")

    def ask_async(
        self, message: Any, *, timeout: float | None = None, idempotency_key: str | None = None
    ) -> Reply:
        self.asked.append((message, idempotency_key))
        reply = Reply()
        if not self.silent and not (self.silent_first and len(self.asked) == 1):
            reply.set({"from": self.node})
        return reply

    begin_ask = ask_async


class Cluster:
    """A fake resolver: holders in order, and which nodes are reachable."""

    ask_timeout = 5.0
    tracing = None

    def __init__(self, *holders: Holder) -> None:
        self.holders = list(holders)
        self.unreachable: set[str] = set()
        self.dead_letters = DeadLetters()
        self.ask_latency = LatencyHistogram()

    def resolve(self, name: str) -> Located | None:
        return (self.holders[0].node, self.holders[0]) if self.holders else None

    def route(
        self, capability: str, strategy: str, key: str | None, exclude: frozenset[str]
    ) -> list[Located]:
        return [(h.node, h) for h in self.holders if h.node not in exclude]

    def reachable(self, node: str) -> bool:
        return node not in self.unreachable


def test_an_ask_in_flight_to_a_node_that_becomes_unreachable_is_answered_by_another_holder() -> (
    None
):
    silent, other = Holder("a", silent=True), Holder("b")
    cluster = Cluster(silent, other)
    timer = threading.Timer(0.3, cluster.unreachable.add, args=("a",))
    timer.start()
    try:
        reply = CapabilityRef(cluster, "counter").ask(
            "x", timeout=10.0, retries=2, idempotency_key="k1"
        )
    finally:
        timer.cancel()
    assert reply == {"from": "b"}
    assert silent.asked == [("x", "k1")] and other.asked == [("x", "k1")]


def test_without_retries_an_ask_to_a_silent_node_is_not_sent_again() -> None:
    silent, other = Holder("a", silent=True), Holder("b")
    cluster = Cluster(silent, other)
    cluster.unreachable.add("a")
    with pytest.raises(AskTimeout):
        CapabilityRef(cluster, "counter").ask("x", timeout=0.3)
    assert other.asked == []


def test_a_silent_node_that_stays_reachable_makes_the_ask_time_out_not_retry() -> None:
    silent, other = Holder("a", silent=True), Holder("b")
    cluster = Cluster(silent, other)
    with pytest.raises(AskTimeout):
        CapabilityRef(cluster, "counter").ask("x", timeout=0.5, retries=3)
    assert other.asked == []


def test_a_named_ask_goes_back_to_its_node_once_that_node_is_reachable_again() -> None:
    holder = Holder("a", silent_first=True)  # the first try is lost in a partition
    cluster = Cluster(holder)
    cluster.unreachable.add("a")
    heal = threading.Timer(0.5, cluster.unreachable.discard, args=("a",))
    heal.start()
    try:
        reply = NamedRef(cluster, "echo-a").ask("x", timeout=10.0, retries=10)
    finally:
        heal.cancel()
    assert reply == {"from": "a"}
    assert len(holder.asked) == 2
