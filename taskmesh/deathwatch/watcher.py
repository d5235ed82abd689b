"""The ``_deathwatch`` actor, and how watchers reach it (see
`taskmesh.deathwatch` for what it does and promises)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskmesh.actors.actor import Actor
from taskmesh.actors.future import Reply
from taskmesh.actors.messages import Terminated
from taskmesh.cluster import MemberEvent, MemberInfo
from taskmesh.errors import ActorError, TaskmeshError

from .book import RemoteWatch, WatchBook

if TYPE_CHECKING:
    from taskmesh.actors.cell import Cell
    from taskmesh.actors.ref import ActorRef
    from taskmesh.addressing import Located, Target
    from taskmesh.node import Node

__all__ = [
    "CHECK",
    "UNREACHABLE_AFTER",
    "WATCH_ACTOR",
    "DeathWatch",
    "DeathWatcher",
    "WatchContext",
    "spawn_death_watch",
    "unwatch_named",
    "watch_named",
]

log = logging.getLogger("taskmesh.deathwatch")

WATCH_ACTOR = "_deathwatch"
"""The local name of every node's death-watch actor."""

UNREACHABLE_AFTER = 10.0
"""Seconds a watched actor's node may stay suspected by the mesh (missed
heartbeats) while still a member, before its watchers get Terminated with
``"unreachable"``. A node that dies is gone from the members within its
lease TTL (3 s by default) anyway: this bounds a partition between two
nodes that both still reach etcd."""

CHECK = 0.5
"""Seconds between checks of the watched nodes, while there are watches."""
_REGISTER_TIMEOUT = 5.0
_RETRY_MAX = 2.0


@dataclass(frozen=True)
class WatchContext:
    """What the death-watch actor needs from its node (its functions run on
    the actor's thread)."""

    node: str
    resolve: Callable[[str], Located | None]
    member: Callable[[str], MemberInfo | None]
    suspected: Callable[[str], bool]
    remote: Callable[[str, str], Target]
    """A ref to ``_deathwatch`` on a node: ``remote(node, address)``."""
    unreachable_after: float = UNREACHABLE_AFTER


# --- messages to the actor (local only) -------------------------------------


@dataclass(frozen=True, slots=True)
class _Watch:
    name: str
    cell: Cell
    token: object


@dataclass(frozen=True, slots=True)
class _Forget:
    entries: tuple[RemoteWatch, ...]


@dataclass(frozen=True, slots=True)
class _Registered:
    key: tuple[str, str]
    attempt: int
    reply: Reply


@dataclass(frozen=True, slots=True)
class _Left:
    node: str


class _Check:
    pass


_PEER_OPS = frozenset({"watch", "unwatch", "terminated", "watchers"})


_CHECK = _Check()


# --- the watcher's side: called by NamedRef.watch / unwatch -------------------


def watch_named(watcher: Cell, name: str) -> None:
    """``Actor.watch(node.ref(name))``: the watcher's thread."""
    system = watcher.system
    local = system.local(name)
    if local is not None:
        local._watch(watcher)
        return
    actor, book = _service(watcher)
    token = object()
    with book.lock:
        book.pending[(watcher, name)] = token
    actor.tell(_Watch(name, watcher, token))


def unwatch_named(watcher: Cell, name: str) -> None:
    """``Actor.unwatch(node.ref(name))``: the watcher's thread. Once it
    returns, no Terminated of that watch is delivered any more."""
    local = watcher.system.local(name)
    if local is not None:
        local._unwatch(watcher)
    actor, book = _service(watcher)
    with book.lock:
        book.pending.pop((watcher, name), None)
        keys = [
            key for key in book.by_watcher.get(watcher.name, {}).get(watcher, ()) if key[1] == name
        ]
        forgotten = [e for e in (book.discard(key, watcher) for key in keys) if e is not None]
    if forgotten:
        actor.tell(_Forget(tuple(forgotten)))


def _service(watcher: Cell) -> tuple[ActorRef, WatchBook]:
    node = watcher.system.node
    service = node.death_watch if node is not None else None
    if service is None:
        raise ActorError(
            "watching an actor by name needs a running Node (its _deathwatch actor); "
            "on a bare ActorSystem, watch an ActorRef"
        )
    return service.ref, service.book


# --- the actor -----------------------------------------------------------------


class DeathWatcher(Actor):
    """The ``_deathwatch`` actor (see the module docstring). Runs in its own
    thread; the reply callbacks and the membership listener only tell it."""

    def __init__(self, context: WatchContext, book: WatchBook) -> None:
        self.ctx = context
        self.book = book

    def receive(self, message: Any) -> Any:
        if isinstance(message, _Check):
            self._check()
        elif isinstance(message, Terminated):
            self._ended_here(message)
        elif isinstance(message, _Watch):
            self._watch(message)
        elif isinstance(message, _Registered):
            self._registered(message)
        elif isinstance(message, _Forget):
            for entry in message.entries:
                self._tell(entry.node, {"op": "unwatch", "name": entry.name, "node": self.ctx.node})
        elif isinstance(message, _Left):
            self._node_gone(message.node, "node_left")
        elif isinstance(message, dict) and message.get("op") in _PEER_OPS:
            return self._from_peer(message)
        else:
            self.system.dead_letters.record(
                self.name, message, "unhandled", "not a death watch message"
            )
        return None

    # --- watching actors on other nodes ----------------------------------------

    def _watch(self, message: _Watch) -> None:
        book, cell, name = self.book, message.cell, message.name
        with book.lock:
            if book.pending.get((cell, name)) is not message.token:
                return  # unwatched meanwhile
            del book.pending[(cell, name)]
        if not cell.alive:
            return
        located = self.ctx.resolve(name)
        if located is None:
            cell.deliver_internal(Terminated(name, "not_found"))
            return
        node, target = located
        if node == self.ctx.node:  # here after all (spawned meanwhile)
            target._watch(cell)  # type: ignore[attr-defined]  # a local ActorRef
            return
        member = self.ctx.member(node)
        if member is None:
            cell.deliver_internal(Terminated(name, "node_left"))
            return
        key = (node, name)
        with book.lock:
            entry = book.remote.get(key)
            fresh = entry is None
            if entry is None:
                entry = book.remote[key] = RemoteWatch(node, name, member.incarnation)
            book.add(entry, cell)
        self.watch(cell.ref)  # a watcher that ends drops its watches
        if fresh:
            self._register(entry)
        if not self.timers.is_active("check"):
            self.timers.start_periodic("check", _CHECK, CHECK)

    def _register(self, entry: RemoteWatch) -> None:
        """Ask the target's node to watch it for us."""
        entry.attempt += 1
        info = self.ctx.member(entry.node)
        if info is None:
            return  # the check ends it
        request = {"op": "watch", "name": entry.name, "node": self.ctx.node}
        me, key, attempt = self.ref, (entry.node, entry.name), entry.attempt
        try:
            reply = self.ctx.remote(entry.node, info.address).ask_async(
                request, timeout=_REGISTER_TIMEOUT
            )
        except TaskmeshError as error:
            reply = Reply()
            reply.fail(error)
        reply.add_done_callback(lambda done: me.tell(_Registered(key, attempt, done)))

    def _registered(self, message: _Registered) -> None:
        entry = self.book.remote.get(message.key)
        if entry is None or entry.attempt != message.attempt:
            return
        try:
            answer = message.reply.get(0)
        except TaskmeshError as error:
            pause = min(0.1 * 2**entry.attempt, _RETRY_MAX)
            log.debug(
                "watching %s on %s: %s; again in %.1f s", entry.name, entry.node, error, pause
            )
            entry.retry_at = time.monotonic() + pause
            return
        gone = answer.get("gone") if isinstance(answer, dict) else None
        if gone is not None:
            self.book.end(message.key, str(gone))
        else:
            entry.registered = True

    def _check(self) -> None:
        """Every `CHECK` s: end the watches of nodes that left, came back as
        another process, or stayed suspected too long; retry registrations."""
        now = time.monotonic()
        book, ctx = self.book, self.ctx
        with book.lock:
            entries = list(book.remote.values())
        if not entries and not book.pending:
            self.timers.cancel("check")
            return
        for entry in entries:
            key = (entry.node, entry.name)
            member = ctx.member(entry.node)
            if member is None or member.incarnation != entry.incarnation:
                book.end(key, "node_left")
            elif ctx.suspected(entry.node):
                if entry.suspect_since is None:
                    entry.suspect_since = now
                elif (
                    now - entry.suspect_since >= ctx.unreachable_after
                    and book.end(key, "unreachable") is not None
                ):
                    self._tell(entry.node, {"op": "unwatch", "name": entry.name, "node": ctx.node})
            else:
                entry.suspect_since = None
                if not entry.registered and now >= entry.retry_at:
                    entry.retry_at = now + _REGISTER_TIMEOUT
                    self._register(entry)

    def _node_gone(self, node: str, reason: str) -> None:
        with self.book.lock:
            keys = [key for key in self.book.remote if key[0] == node]
        for key in keys:
            self.book.end(key, reason)
        for nodes in self.book.watched_by.values():
            nodes.discard(node)

    # --- actors here, and watchers here, that ended ----------------------------

    def _ended_here(self, message: Terminated) -> None:
        name, book = message.name, self.book
        for node in book.watched_by.pop(name, ()):
            self._tell(node, {"op": "terminated", "name": name, "reason": message.reason,
                              "node": self.ctx.node})  # fmt: skip
        forgotten: list[RemoteWatch] = []
        with book.lock:
            for cell in [c for c in book.by_watcher.get(name, {}) if not c.alive]:
                for key in list(book.by_watcher[name][cell]):
                    entry = book.discard(key, cell)
                    if entry is not None:
                        forgotten.append(entry)
        for entry in forgotten:
            self._tell(entry.node, {"op": "unwatch", "name": entry.name, "node": self.ctx.node})

    # --- what other nodes' _deathwatch send ------------------------------------

    def _from_peer(self, message: dict[str, Any]) -> Any:
        op, name, node = message.get("op"), message.get("name"), message.get("node")
        if not (isinstance(name, str) and isinstance(node, str)):
            self.system.dead_letters.record(
                self.name, message, "unhandled", "a death watch message needs name and node"
            )
            return {"error": "a death watch message needs the strings name and node"}
        if op == "watch":
            target = self.system.local(name)
            if target is None:
                return {"gone": "not_found"}
            self.book.watched_by.setdefault(name, set()).add(node)
            self.watch(target)
            return {"ok": True}
        if op == "watchers":  # introspection: which nodes watch the actor here
            return sorted(self.book.watched_by.get(name, ()))
        if op == "unwatch":
            nodes = self.book.watched_by.get(name)
            if nodes is not None:
                nodes.discard(node)
                if not nodes:
                    del self.book.watched_by[name]
            return None
        reason = message.get("reason")  # "terminated"
        self.book.end((node, name), reason if isinstance(reason, str) else "stopped")
        return None

    def _tell(self, node: str, message: dict[str, Any]) -> None:
        info = self.ctx.member(node)
        if info is None:
            return  # gone: it has no watches left to keep
        try:
            self.ctx.remote(node, info.address).tell(message)
        except TaskmeshError as error:
            log.info("death watch: telling %s failed: %s", node, error)


@dataclass(frozen=True)
class DeathWatch:
    """A node's death watch: its actor and its book (``node.death_watch``)."""

    ref: ActorRef
    book: WatchBook


def spawn_death_watch(node: Node, *, unreachable_after: float = UNREACHABLE_AFTER) -> DeathWatch:
    """Start ``node``'s ``_deathwatch`` actor and feed it the membership's
    leaves (the node calls this at start)."""
    member, locator = node.member, node.locator
    if member is None or locator is None:
        raise ActorError("the death watch needs a started node")
    context = WatchContext(
        node=node.node_id,
        resolve=locator.resolve,
        member=member.membership.get,
        suspected=lambda peer: peer in member.routing.suspects,
        remote=lambda peer, address: locator.ref(peer, address, WATCH_ACTOR),
        unreachable_after=unreachable_after,
    )
    book = WatchBook()
    ref = node.system.spawn(DeathWatcher, context, book, name=WATCH_ACTOR, restart="permanent")

    def on_member(event: MemberEvent) -> None:  # the members watch thread
        if event.kind == "leave" and node.running:
            ref.tell(_Left(event.member.node))

    member.on_member_event(on_member)
    return DeathWatch(ref, book)
