"""Cluster singletons: declared once, placed by the leader, run by one node.

A singleton is declared at ``singletons/<name>`` with the capability (node
label) it needs. The leader writes ``placements/<name>`` naming a node that
has the capability, **under that node's lease** and guarded by its fencing
token. When the node dies its lease takes the placement with it, and the
leader places the singleton again on another node.

Each node watches ``placements/`` and calls ``start(name, capability)``
when a placement names it, and ``stop(name)`` when the placement goes
elsewhere or vanishes, or at once when its own lease is lost. A node stops
a singleton no later than etcd drops its lease, and the leader re-places
only after that, so at most one instance acts at a time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from taskmesh.errors import ClusterError

from .election import Election, Fence
from .etcd import Compare, EtcdClient, KeyValue, LeaseKeeper, PrefixWatch, Put, WatchEvent
from .keys import ClusterKeys, decode, encode, validate_name
from .membership import Load, MemberInfo, Membership

__all__ = ["Placement", "Singleton"]

_log = logging.getLogger("taskmesh.cluster.placement")


@dataclass(frozen=True, slots=True)
class Singleton:
    """A declared singleton, and where it is placed now (``node`` empty if nowhere)."""

    name: str
    capability: str
    node: str = ""


class Placement:
    """Places singletons when this node leads; runs the ones placed here.

    ``start(name, capability)`` and ``stop(name)`` run on the placement
    watch thread (``taskmesh-watch:placements``), or ``stop`` on the lease
    thread when the lease is lost. The leader's work runs on its own thread
    (``taskmesh-placer``).
    """

    def __init__(
        self,
        client: EtcdClient,
        keeper: LeaseKeeper,
        keys: ClusterKeys,
        node: str,
        *,
        election: Election,
        membership: Membership,
        start: Callable[[str, str], None] | None = None,
        stop: Callable[[str], None] | None = None,
        load_of: Callable[[str], Load | None] = lambda node: None,
    ) -> None:
        self._client = client
        self._load_of = load_of
        self._keeper = keeper
        self._keys = keys
        self.node = node
        self._election = election
        self._membership = membership
        self._start_cb = start
        self._stop_cb = stop
        self._lock = threading.RLock()
        self._declared: dict[str, str] = {}
        self._placed: dict[str, KeyValue] = {}
        self._running: set[str] = set()
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._declared_watch = PrefixWatch(
            client,
            keys.singletons,
            on_reset=self._declared_reset,
            on_event=self._declared_event,
            name="singletons",
        )
        self._placed_watch = PrefixWatch(
            client,
            keys.placements,
            on_reset=self._placed_reset,
            on_event=self._placed_event,
            name="placements",
        )
        keeper.on_lost(lambda lease: self._stop_all())
        election.subscribe(on_elected=lambda fence: self._wake.set())
        membership.subscribe(lambda event: self._wake.set())

    def start(self, *, timeout: float = 10.0) -> None:
        """Start both watches and the placer thread."""
        self._declared_watch.start(wait=timeout)
        self._placed_watch.start(wait=timeout)
        self._halt.clear()
        self._thread = threading.Thread(target=self._placer, name="taskmesh-placer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop placing, stop every singleton running here, stop watching."""
        self._halt.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._placed_watch.stop()
        self._declared_watch.stop()
        self._stop_all()

    # --- declarations -------------------------------------------------------

    def declare(self, name: str, capability: str) -> None:
        """Declare singleton ``name``, to run on a node labelled ``capability``."""
        validate_name(name, "singleton name")
        validate_name(capability, "capability")
        self._client.put(self._keys.singleton(name), encode({"capability": capability}))

    def undeclare(self, name: str) -> None:
        """Remove the declaration; the running instance is stopped."""
        self._client.delete(self._keys.singleton(name))
        self._client.delete(self._keys.placement(name))

    def singletons(self) -> dict[str, Singleton]:
        """Declared singletons and where each is placed, from the local view."""
        with self._lock:
            return {
                name: Singleton(name, cap, self._node_of(self._placed.get(name)))
                for name, cap in self._declared.items()
            }

    def running(self) -> set[str]:
        """Singletons running on this node."""
        with self._lock:
            return set(self._running)

    @staticmethod
    def _node_of(kv: KeyValue | None) -> str:
        return str(decode(kv.value).get("node", "")) if kv else ""

    # --- the leader's placer thread ------------------------------------------

    def _placer(self) -> None:
        while not self._halt.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            fence = self._election.fence
            if fence is None or self._halt.is_set():
                continue
            try:
                self._place_all(fence)
            except ClusterError as exc:
                _log.info("placing singletons failed (will retry): %s", exc)
                self._halt.wait(0.25)
                self._wake.set()

    def _place_all(self, fence: Fence) -> None:
        members = self._membership.members()
        with self._lock:
            todo = [
                (name, cap, self._placed.get(name))
                for name, cap in self._declared.items()
                if not self._placement_ok(self._placed.get(name), cap, members)
            ]
        for name, cap, current in todo:
            target = self._choose(cap, members, self._load_of)
            if target is None:
                _log.warning("no live node has capability %r for singleton %r", cap, name)
                continue
            key = self._keys.placement(name)
            expected = current.mod_revision if current else 0
            result = fence.txn(
                [Put(key, encode({"node": target.node, "capability": cap}), target.lease)],
                compare=[Compare(key, "mod", "==", expected)],
            )
            if result.succeeded:
                _log.info("singleton %r placed on %s", name, target.node)

    @staticmethod
    def _placement_ok(kv: KeyValue | None, cap: str, members: dict[str, MemberInfo]) -> bool:
        if kv is None:
            return False
        node = Placement._node_of(kv)
        member = members.get(node)
        return member is not None and cap in member.capabilities and member.lease == kv.lease

    @staticmethod
    def _choose(
        cap: str, members: dict[str, MemberInfo], load_of: Callable[[str], Load | None]
    ) -> MemberInfo | None:
        able = [m for m in members.values() if cap in m.capabilities and m.lease]

        def rank(m: MemberInfo) -> tuple[int, float, str]:
            load = load_of(m.node) or Load()
            return (load.mailbox, load.cpu, m.node)

        return min(able, key=rank, default=None)

    # --- watch threads ------------------------------------------------------

    def _declared_reset(self, kvs: list[KeyValue], revision: int) -> None:
        with self._lock:
            self._declared = {
                ClusterKeys.tail(self._keys.singletons, kv.key): str(
                    decode(kv.value).get("capability", "")
                )
                for kv in kvs
            }
        self._wake.set()

    def _declared_event(self, event: WatchEvent) -> None:
        name = ClusterKeys.tail(self._keys.singletons, event.kv.key)
        with self._lock:
            if event.kind == "delete":
                self._declared.pop(name, None)
            else:
                self._declared[name] = str(decode(event.kv.value).get("capability", ""))
        self._wake.set()

    def _placed_reset(self, kvs: list[KeyValue], revision: int) -> None:
        with self._lock:
            self._placed = {ClusterKeys.tail(self._keys.placements, kv.key): kv for kv in kvs}
            for name in set(self._running) | set(self._placed):
                self._converge(name)
        self._wake.set()

    def _placed_event(self, event: WatchEvent) -> None:
        name = ClusterKeys.tail(self._keys.placements, event.kv.key)
        with self._lock:
            if event.kind == "delete":
                self._placed.pop(name, None)
            else:
                self._placed[name] = event.kv
            self._converge(name)
        self._wake.set()

    def _converge(self, name: str) -> None:
        """Start or stop ``name`` here so that it runs iff placed on this node."""
        kv = self._placed.get(name)
        lease = self._keeper.lease_id
        here = kv is not None and self._node_of(kv) == self.node and kv.lease == lease
        if here and name not in self._running:
            self._running.add(name)
            assert kv is not None
            cap = str(decode(kv.value).get("capability", ""))
            _log.info("starting singleton %r here", name)
            if self._start_cb is not None:
                self._safe(self._start_cb, name, cap)
        elif not here and name in self._running:
            self._running.discard(name)
            _log.info("stopping singleton %r here", name)
            if self._stop_cb is not None:
                self._safe(self._stop_cb, name)

    def _stop_all(self) -> None:
        with self._lock:
            running, self._running = self._running, set()
        for name in sorted(running):
            _log.info("stopping singleton %r (lease lost or shutting down)", name)
            if self._stop_cb is not None:
                self._safe(self._stop_cb, name)

    @staticmethod
    def _safe(fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except Exception:
            _log.exception("singleton callback failed")
