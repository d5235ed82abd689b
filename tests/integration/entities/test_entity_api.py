"""The entity API on one real node (embedded etcd, in this process): hooks,
failures, saves, sync receive, refs, and the errors users see."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import taskmesh
from taskmesh.entities.entity import check_entity_class
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

EVENTS: list[tuple[str, str, Any]] = []


class Account(taskmesh.Entity):
    """Persistent, async; ``{"add": n}``, ``"boom"``, ``"stop"``, ``"get"``."""

    entity_type = "account"
    persistent = True
    idle_timeout = None

    def initial_state(self) -> Any:
        return {"balance": 0}

    async def on_activate(self) -> None:
        EVENTS.append(("activate", self.entity_id, dict(self.state)))

    def on_passivate(self) -> None:
        EVENTS.append(("passivate", self.entity_id, dict(self.state)))

    async def receive(self, message: Any) -> Any:
        if message == "get":
            return self.state["balance"]
        if message == "boom":
            self.state["balance"] = -999  # never saved: the failure discards it
            raise ValueError("boom")
        if message == "stop":
            self.stop()
            return "stopping"
        self.state["balance"] += message["add"]
        self.save()  # not awaited: the runtime waits before the answer goes out
        return self.state["balance"]


class Tally(taskmesh.Entity):
    """A plain ``def receive`` (runs on the event loop too) that asks
    another entity with ``await``-free code: tells only."""

    entity_type = "tally"
    idle_timeout = 0.2

    def on_activate(self) -> None:
        self.count = 0

    def receive(self, message: Any) -> Any:
        self.count += 1
        if message == "forward":
            self.node.entity("tally", "other").tell("hi")
        return {"id": self.entity_id, "count": self.count}


class Log(taskmesh.Entity):
    """Records what it receives, after a slow activation."""

    entity_type = "log"
    idle_timeout = None

    async def on_activate(self) -> None:
        await asyncio.sleep(0.2)  # a slow activation (loading something): messages wait
        self.seen: list[Any] = []

    def receive(self, message: Any) -> Any:
        if message == "get":
            return self.seen
        self.seen.append(message)
        return None


@pytest.fixture(scope="module")
def node() -> Iterator[taskmesh.Node]:
    with taskmesh.Node(cluster="entity-api", name="api") as running:
        running.host(Account)
        running.host(Tally)
        running.host(Log)
        yield running


def test_a_persistent_entity_answers_after_its_save_and_a_failure_reloads_the_saved_state(
    node: taskmesh.Node,
) -> None:
    account = node.entity("account", "alice")
    assert account.ask({"add": 5}, timeout=10.0) == 5
    assert account.ask({"add": 2}, timeout=10.0) == 7
    with pytest.raises(ValueError, match="boom"):
        account.ask("boom", timeout=10.0)
    # Restarted: a fresh instance with the saved state, on_activate again.
    assert account.ask("get", timeout=10.0) == 7
    activations = [e for e in EVENTS if e[:2] == ("activate", "alice")]
    assert [e[2]["balance"] for e in activations] == [0, 7]


def test_messages_that_come_during_activation_wait_for_it_in_order(node: taskmesh.Node) -> None:
    log = node.entity("log", "l1")
    for i in range(100):
        log.tell(i)  # the first activates it; on_activate runs before any receive
    assert log.ask("get", timeout=10.0) == list(range(100))


def test_stop_passivates_and_the_next_message_activates_again(node: taskmesh.Node) -> None:
    account = node.entity("account", "bob")
    account.ask({"add": 1}, timeout=10.0)
    assert account.ask("stop", timeout=10.0) == "stopping"
    wait_until(lambda: ("passivate", "bob", {"balance": 1}) in EVENTS, 10, message="passivated")
    assert account.ask({"add": 1}, timeout=10.0) == 2


def test_a_sync_receive_works_and_an_idle_entity_passivates(node: taskmesh.Node) -> None:
    tally = node.entity("tally", "t1")
    assert tally.ask("x", timeout=10.0) == {"id": "t1", "count": 1}
    assert tally.ask("forward", timeout=10.0)["count"] == 2
    assert node.entity("tally", "other").ask("x", timeout=10.0)["count"] == 2
    host = node.entities.hosts["tally"]  # type: ignore[union-attr]
    wait_until(lambda: host.stats()["passivations"] >= 2, 10, message="idle passivation")
    assert tally.ask("x", timeout=10.0)["count"] == 1  # a fresh activation


def test_async_senders_reach_entities_from_any_event_loop(node: taskmesh.Node) -> None:
    async def main() -> Any:
        await node.entity("tally", "t-async").tell_async("x")
        return await node.entity("tally", "t-async").ask_async("x", timeout=10.0)

    assert asyncio.run(main())["count"] == 2


def test_a_repeated_idempotency_key_is_answered_from_memory(node: taskmesh.Node) -> None:
    account = node.entity("account", "carol")
    first = account.ask({"add": 10}, timeout=10.0, idempotency_key="pay-1")
    again = account.ask({"add": 10}, timeout=10.0, idempotency_key="pay-1")
    assert first == again == 10
    assert account.ask("get", timeout=10.0) == 10


def test_unknown_types_and_bad_ids_are_clear_errors(node: taskmesh.Node) -> None:
    with pytest.raises(taskmesh.ActorNotFound, match="no node hosts entities of type 'nope'"):
        node.entity("nope", "x").ask(1, timeout=5.0)
    node.entity("nope", "x").tell(1)
    assert node.dead_letters.counts().get("actor_not_found", 0) >= 1
    with pytest.raises(taskmesh.InvalidName):
        node.entity("account", "")
    with pytest.raises(taskmesh.InvalidName):
        node.entity("bad/type", "x")
    with pytest.raises(taskmesh.ConfigError, match="hosted here already"):
        node.host(Account)


def test_a_state_msgpack_cannot_encode_fails_the_message(node: taskmesh.Node) -> None:
    class Bad(taskmesh.Entity):
        entity_type = "bad-state"
        persistent = True

        async def receive(self, message: Any) -> Any:
            self.state = {"when": object()}
            await self.save()

    node.host(Bad)
    with pytest.raises(taskmesh.InvalidMessage):
        node.entity("bad-state", "x").ask(1, timeout=10.0)


class NoType(taskmesh.Entity):
    async def receive(self, message: Any) -> Any:
        return message


class Overrides(taskmesh.Entity):
    entity_type = "overrides"

    def on_start(self) -> None:
        pass

    async def receive(self, message: Any) -> Any:
        return message


class Routed(taskmesh.Entity):
    entity_type = "routed"
    capabilities = ("echo",)

    async def receive(self, message: Any) -> Any:
        return message


@pytest.mark.parametrize(
    ("cls", "words"),
    [
        (NoType, "entity_type is not set"),
        (Overrides, "use on_activate and on_passivate"),
        (Routed, "not by capability"),
        (taskmesh.Actor, "needs a taskmesh.Entity subclass"),
    ],
)
def test_classes_that_cannot_be_hosted_are_refused_with_a_clear_error(
    cls: type, words: str
) -> None:
    with pytest.raises(taskmesh.ConfigError, match=words):
        check_entity_class(cls)
