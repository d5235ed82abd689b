"""Death watch across nodes, with two actor systems standing in for two
nodes (their ``_deathwatch`` actors talk through local refs) and a fake
membership: the reasons a watcher hears, unwatch, and the watches a dead
watcher leaves behind. (Real nodes: tests/integration/node/test_remote_watch.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

import taskmesh
from taskmesh.addressing import Located, NamedRef, Target
from taskmesh.cluster import MemberInfo
from taskmesh.deathwatch import WATCH_ACTOR, DeathWatch, DeathWatcher, WatchBook, WatchContext
from tests.waiting import wait_until


class Target_(taskmesh.Actor):
    def receive(self, message: Any) -> Any:
        return message


class Watcher(taskmesh.Actor):
    """``("watch", name)`` / ``("unwatch", name)`` by name; ``"seen"``."""

    def on_start(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def receive(self, message: Any) -> Any:
        if isinstance(message, taskmesh.Terminated):
            self.seen.append((message.name, message.reason))
        elif message == "seen":
            return list(self.seen)
        elif message[0] == "watch":
            self.watch(self.node.ref(message[1]))
        elif message[0] == "unwatch":
            self.unwatch(self.node.ref(message[1]))
        return None


@dataclass
class Cluster:
    """Node ``a`` (watchers) and node ``b`` (targets), and what etcd and
    the mesh would say about them."""

    a: taskmesh.ActorSystem
    b: taskmesh.ActorSystem
    incarnations: dict[str, str] = field(default_factory=lambda: {"a": "1", "b": "1"})
    suspects: set[str] = field(default_factory=set)
    books: dict[str, WatchBook] = field(default_factory=dict)

    def system(self, node: str) -> taskmesh.ActorSystem:
        return self.a if node == "a" else self.b

    def context(self, node: str) -> WatchContext:
        def resolve(name: str) -> Located | None:
            for where in ("a", "b"):
                ref = self.system(where).local(name)
                if ref is not None:
                    return where, ref
            return None

        def member(peer: str) -> MemberInfo | None:
            incarnation = self.incarnations.get(peer)
            return None if incarnation is None else MemberInfo(peer, peer, incarnation=incarnation)

        def remote(peer: str, address: str) -> Target:
            ref = self.system(peer).local(WATCH_ACTOR)
            assert ref is not None
            return ref

        return WatchContext(
            node=node,
            resolve=resolve,
            member=member,
            suspected=self.suspects.__contains__,
            remote=remote,
            unreachable_after=0.3,
        )


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    a, b = taskmesh.ActorSystem(), taskmesh.ActorSystem()
    world = Cluster(a, b)
    try:
        for node, system in (("a", a), ("b", b)):
            book = world.books[node] = WatchBook()
            ref = system.spawn(DeathWatcher, world.context(node), book, name=WATCH_ACTOR)
            system.node = SimpleNamespace(  # type: ignore[assignment]
                death_watch=DeathWatch(ref, book),
                ref=lambda name: NamedRef(None, name),  # type: ignore[arg-type]  # watch only
            )
        yield world
    finally:
        a.stop()
        b.stop()


def seen(watcher: taskmesh.ActorRef) -> list[tuple[str, str]]:
    return watcher.ask("seen")  # type: ignore[no-any-return]


def test_a_watcher_hears_why_a_remote_actor_ended_and_unwatch_is_exact(cluster: Cluster) -> None:
    watcher = cluster.a.spawn(Watcher, name="watcher")
    for name in ("t1", "t2", "t3"):
        cluster.b.spawn(Target_, name=name)
    for name in ("t1", "t2", "t3", "nobody"):
        watcher.ask(("watch", name))
    wait_until(lambda: cluster.books["b"].watched_by.keys() == {"t1", "t2", "t3"})
    watcher.ask(("unwatch", "t2"))
    cluster.b.stop_actor("t2")
    cluster.b.stop_actor("t1")
    wait_until(lambda: ("t1", "stopped") in seen(watcher))
    assert seen(watcher) == [("nobody", "not_found"), ("t1", "stopped")]

    cluster.incarnations["b"] = "2"  # b came back as another process
    wait_until(lambda: ("t3", "node_left") in seen(watcher))


def test_a_node_suspected_too_long_ends_its_watches(cluster: Cluster) -> None:
    watcher = cluster.a.spawn(Watcher, name="watcher")
    cluster.b.spawn(Target_, name="t1")
    watcher.ask(("watch", "t1"))
    wait_until(lambda: "t1" in cluster.books["b"].watched_by)
    cluster.suspects.add("b")
    wait_until(lambda: seen(watcher) == [("t1", "unreachable")])
    wait_until(lambda: "t1" not in cluster.books["b"].watched_by)  # b was told, best effort


def test_a_watcher_that_ends_leaves_no_watch_behind(cluster: Cluster) -> None:
    watcher = cluster.a.spawn(Watcher, name="watcher")
    cluster.b.spawn(Target_, name="t1")
    watcher.ask(("watch", "t1"))
    wait_until(lambda: "t1" in cluster.books["b"].watched_by)
    cluster.a.stop_actor("watcher")
    wait_until(lambda: "t1" not in cluster.books["b"].watched_by)
    assert cluster.books["a"].remote == {} and cluster.books["a"].by_watcher == {}


def test_a_malformed_peer_message_is_a_dead_letter_not_a_crash(cluster: Cluster) -> None:
    dw = cluster.b.local(WATCH_ACTOR)
    assert dw is not None
    assert dw.ask({"op": "watch", "name": 7, "node": None}) == {
        "error": "a death watch message needs the strings name and node"
    }
    dw.tell({"op": "nonsense"})
    wait_until(lambda: cluster.b.dead_letters.counts().get("unhandled") == 2)
    assert dw.ask({"op": "watch", "name": "nobody", "node": "a"}) == {"gone": "not_found"}
