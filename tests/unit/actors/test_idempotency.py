from __future__ import annotations

from typing import Any

import pytest

from taskmesh.actors import ActorSystem, Reply
from taskmesh.actors.idempotency import IdempotencyCache, admitted_key
from tests.unit.actors.support import Both, Gate, Kind
from tests.waiting import wait_until


class Counter(Both):
    """Applies an effect per message and answers how often it was applied."""

    def __init__(self, gate: Gate | None = None) -> None:
        self.applied: dict[str, int] = {}
        self.gate = gate

    async def handle(self, message: Any) -> Any:
        if self.gate is not None:
            await self.gate.wait()
        if message == "fail":
            raise ValueError("effect failed")
        self.applied[message] = self.applied.get(message, 0) + 1
        return self.applied[message]


def test_a_repeated_key_is_answered_from_memory_without_running_again(
    system: ActorSystem, kind: Kind
) -> None:
    ref = system.spawn(kind(Counter), name="c")
    assert ref.ask("order-42", idempotency_key="k1") == 1
    assert ref.ask("order-42", idempotency_key="k1") == 1
    assert ref.ask("order-42", idempotency_key="k2") == 2
    assert ref.ask("order-42") == 3


def test_a_repeat_while_the_first_runs_waits_for_the_same_answer(
    system: ActorSystem, kind: Kind
) -> None:
    gate = Gate()
    ref = system.spawn(kind(Counter), name="c", gate=gate)
    first = ref.ask_async("x", timeout=30, idempotency_key="k")
    second = ref.ask_async("x", timeout=30, idempotency_key="k")
    gate.set()
    assert (first.get(30), second.get(30)) == (1, 1)


def test_an_error_is_remembered_too(system: ActorSystem, kind: Kind) -> None:
    ref = system.spawn(kind(Counter), name="c")
    with pytest.raises(ValueError):
        ref.ask("fail", idempotency_key="k")
    wait_until(lambda: system.restart_count == 1)
    with pytest.raises(ValueError):
        ref.ask("fail", idempotency_key="k")
    assert ref.ask("x") == 1  # had the repeat run, its restart would come first
    assert system.restart_count == 1


def test_deliver_honours_keys_like_a_local_ask(system: ActorSystem, kind: Kind) -> None:
    system.spawn(kind(Counter), name="c")
    replies = [Reply() for _ in range(3)]
    for reply in replies:
        system.deliver("c", "m", reply, None, "key")
    assert [r.get(10) for r in replies] == [1, 1, 1]


def test_keys_expire_after_the_ttl_and_the_memory_is_bounded() -> None:
    now = [0.0]
    cache = IdempotencyCache(capacity=2, ttl=10.0, clock=lambda: now[0])
    first = cache.admit("a", "k1", Reply())
    assert first is not None
    first.set("done")
    assert cache.admit("a", "k1", Reply()) is None  # remembered
    now[0] = 11.0
    assert cache.admit("a", "k1", Reply()) is not None  # expired: runs again
    cache.admit("a", "k2", Reply())
    cache.admit("a", "k3", Reply())
    assert len(cache) == 2


def test_a_first_delivery_handed_on_keeps_its_key_and_runs_once_wherever_it_goes() -> None:
    cache = IdempotencyCache()
    asker = Reply()
    first = cache.admit("~t/1/e", "k", asker)
    assert first is not None and admitted_key(first) == "k"
    assert admitted_key(asker) is None and admitted_key(None) is None
    # Queued again here (a new activation of the same name): it still runs.
    assert cache.admit("~t/1/e", "k", first) is first
    # Handed to an activation under another name (the shard's next owner):
    # that one runs it, and a retry with the key there waits for its answer.
    there = cache.admit("~t/2/e", "k", first)
    assert there is not None and there is not first
    retry = Reply()
    assert cache.admit("~t/2/e", "k", retry) is None
    there.set("ran once")
    assert (asker.get(1), retry.get(1)) == ("ran once", "ran once")
