"""Capability routing tables: which actors hold a capability, and which to pick.

Each node publishes ``routes/<capability>/<node>/<actor>`` for its actors
under its lease, so a dead node's routes vanish with it. Every node keeps
the whole table from a watch and picks targets locally with a strategy:

- ``round_robin`` (default): rotate through the holders;
- ``least_loaded``: the holder whose node published the fewest queued
  messages, then the lowest CPU;
- ``consistent_hash``: by ``key`` on a ring with virtual nodes, so one key
  reaches one actor while the holders stay the same, and only the keys of
  a departed holder move;
- ``broadcast``: every holder.

Peers marked suspect (the transport's heartbeats say they stopped
answering) are skipped before their lease expires.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import logging
import random
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from .etcd import EtcdClient, KeyValue, LeaseKeeper, PrefixWatch, Put, WatchEvent
from .keys import ClusterKeys, decode, encode, validate_name
from .membership import Load

__all__ = ["Route", "RoutingTable", "Strategy"]

_log = logging.getLogger("taskmesh.cluster.routing")

Strategy = Literal["round_robin", "least_loaded", "consistent_hash", "broadcast"]
STRATEGIES: tuple[Strategy, ...] = ("round_robin", "least_loaded", "consistent_hash", "broadcast")
_VNODES = 64
_PUTS_PER_TXN = 128  # etcd's default --max-txn-ops


@dataclass(frozen=True, slots=True, order=True)
class Route:
    """One actor that holds a capability: its node, name and transport address."""

    node: str
    actor: str
    address: str


class _Ring:
    """A consistent-hash ring over routes, with ``_VNODES`` points per route."""

    def __init__(self, routes: Iterable[Route]) -> None:
        points = sorted(
            (_hash(f"{r.node}/{r.actor}#{i}"), r) for r in routes for i in range(_VNODES)
        )
        self._hashes = [h for h, _ in points]
        self._routes = [r for _, r in points]

    def pick(self, key: str, skip: Collection[str] = frozenset()) -> Route | None:
        """The first route clockwise from ``key`` whose node is not in ``skip``."""
        if not self._hashes:
            return None
        start = bisect.bisect(self._hashes, _hash(key))
        for i in range(start, start + len(self._routes)):
            route = self._routes[i % len(self._routes)]
            if route.node not in skip:
                return route
        return None


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class RoutingTable:
    """Publishes this node's routes and answers route queries from the local table.

    ``load_of(node)`` returns a node's published `Load` (for
    ``least_loaded``); the facade passes the membership view. Queries are
    safe from any thread.
    """

    def __init__(
        self,
        client: EtcdClient,
        keeper: LeaseKeeper,
        keys: ClusterKeys,
        node: str,
        *,
        load_of: Callable[[str], Load | None] = lambda node: None,
    ) -> None:
        self._client = client
        self._keys = keys
        self.node = node
        self._load_of = load_of
        self._lock = threading.Lock()
        # Per capability, its holders by (node, actor): a watch event touches
        # one entry, not a scan of every holder (5,000 holders made it O(N^2)).
        self._table: dict[str, dict[tuple[str, str], Route]] = {}
        self._mine: dict[str, tuple[frozenset[str], str]] = {}
        self._suspects: set[str] = set()
        # A random start: short-lived processes (one CLI call each) spread out.
        self._counter = itertools.count(random.randrange(1 << 20))
        self._rings: dict[str, _Ring] = {}
        self._healthy_cache: dict[str, list[Route]] = {}  # cleared with _rings
        self.version = 0
        """Bumped (under the lock) whenever the table or the suspects change,
        so callers may cache what they derived from it."""
        self._keeper = keeper
        self.on_missing: Callable[[], None] = lambda: None
        """Called (watch thread) when a route this node publishes vanished from etcd."""
        self._watch = PrefixWatch(
            client, keys.routes, on_reset=self._reset, on_event=self._event, name="routes"
        )
        keeper.on_acquired(self._republish)

    def start(self, *, timeout: float = 10.0) -> None:
        """Start the watch and wait for the first snapshot."""
        self._watch.start(wait=timeout)

    def stop(self) -> None:
        """Stop the watch. Published routes go with the lease."""
        self._watch.stop()

    # --- publishing ---------------------------------------------------------

    def publish(self, actor: str, capabilities: Iterable[str], address: str) -> None:
        """Advertise that ``actor`` (at ``address``) holds ``capabilities``.

        Raises `LeaseLost` while this node has no valid lease.
        """
        caps = frozenset(validate_name(c, "capability") for c in capabilities)
        validate_name(actor, "actor name")
        lease = self._keeper.require()
        with self._lock:
            old = self._mine.get(actor)
            self._mine[actor] = (caps, address)
        for cap in caps:
            value = encode({"address": address})
            self._client.put(self._keys.route(cap, self.node, actor), value, lease=lease)
        for cap in (old[0] - caps) if old else ():
            self._client.delete(self._keys.route(cap, self.node, actor))

    def publish_batch(self, items: Sequence[tuple[str, Iterable[str], str]], lease: int) -> None:
        """Advertise many ``(actor, capabilities, address)`` under ``lease``,
        in transactions of up to ``_PUTS_PER_TXN`` puts."""
        self._put_all(self.puts_for(items, lease))
        self.note_published(items)

    def puts_for(self, items: Sequence[tuple[str, Iterable[str], str]], lease: int) -> list[Put]:
        """The puts that advertise ``items`` (for a caller's own transaction)."""
        puts: list[Put] = []
        for actor, capabilities, address in items:
            validate_name(actor, "actor name")
            value = encode({"address": address})
            for cap in capabilities:
                key = self._keys.route(validate_name(cap, "capability"), self.node, actor)
                puts.append(Put(key, value, lease))
        return puts

    def note_published(self, items: Sequence[tuple[str, Iterable[str], str]]) -> None:
        """Record ``items`` as advertised (their puts succeeded); withdraw any
        capability an actor no longer has, one key at a time (rare)."""
        stale: list[str] = []
        for actor, capabilities, address in items:
            caps = frozenset(capabilities)
            with self._lock:
                old = self._mine.get(actor)
                self._mine[actor] = (caps, address)
            stale += [
                self._keys.route(cap, self.node, actor) for cap in (old[0] - caps if old else ())
            ]
        for key in stale:
            self._client.delete(key)

    def forget(self, actor: str) -> None:
        """Stop advertising ``actor`` here without touching etcd (the caller deletes)."""
        with self._lock:
            self._mine.pop(actor, None)

    def published(self, actor: str) -> tuple[frozenset[str], str] | None:
        """What this node advertises for ``actor``: its capabilities and address."""
        with self._lock:
            return self._mine.get(actor)

    def _put_all(self, puts: Sequence[Put]) -> None:
        for start in range(0, len(puts), _PUTS_PER_TXN):
            self._client.txn([], puts[start : start + _PUTS_PER_TXN])

    def unpublish(self, actor: str) -> None:
        """Withdraw every route of ``actor``."""
        with self._lock:
            old = self._mine.pop(actor, None)
        for cap in old[0] if old else ():
            self._client.delete(self._keys.route(cap, self.node, actor))

    def _republish(self, lease: int) -> None:
        """Lease thread: publish every route again under the new lease, in batches."""
        with self._lock:
            mine = dict(self._mine)
        puts = [
            Put(self._keys.route(cap, self.node, actor), encode({"address": address}), lease)
            for actor, (caps, address) in mine.items()
            for cap in caps
        ]
        self._put_all(puts)

    # --- suspects -----------------------------------------------------------

    def mark_suspect(self, node: str) -> None:
        """Skip ``node``'s actors until `clear_suspect` (called by the transport)."""
        with self._lock:
            self._suspects.add(node)
            self._rings.clear()
            self._healthy_cache.clear()
            self.version += 1

    def clear_suspect(self, node: str) -> None:
        """Route to ``node`` again."""
        with self._lock:
            self._suspects.discard(node)
            self._rings.clear()
            self._healthy_cache.clear()
            self.version += 1

    @property
    def suspects(self) -> frozenset[str]:
        """Nodes currently skipped."""
        with self._lock:
            return frozenset(self._suspects)

    # --- queries ------------------------------------------------------------

    def capabilities(self) -> dict[str, list[Route]]:
        """The whole table: capability to its holders (suspects included)."""
        with self._lock:
            return {cap: sorted(routes.values()) for cap, routes in self._table.items() if routes}

    def routes(self, capability: str) -> list[Route]:
        """Holders of ``capability`` that are not suspect, sorted."""
        with self._lock:
            return list(self._healthy(capability))

    def _healthy(self, capability: str) -> list[Route]:
        """The caller holds the lock; the list is shared: do not change it."""
        healthy = self._healthy_cache.get(capability)
        if healthy is None:
            held = self._table.get(capability)
            suspects = self._suspects
            healthy = sorted(r for r in held.values() if r.node not in suspects) if held else []
            self._healthy_cache[capability] = healthy
        return healthy

    def pick(
        self,
        capability: str,
        strategy: Strategy = "round_robin",
        *,
        key: str | None = None,
        exclude: Collection[str] = frozenset(),
    ) -> list[Route]:
        """The target(s) for a message to ``capability``; empty when none is healthy.

        One route except for ``broadcast``. ``consistent_hash`` needs ``key``.
        Routes on nodes in ``exclude`` are skipped (a retry after a node
        failed); with ``consistent_hash`` the key moves to the next holder
        on the ring, as it would if those nodes had left.
        """
        with self._lock:
            routes = self._healthy(capability)
            if exclude:
                routes = [r for r in routes if r.node not in exclude]
            if not routes:
                return []
            if strategy == "broadcast":
                return list(routes)
            if strategy == "round_robin":
                return [routes[next(self._counter) % len(routes)]]
            if strategy == "consistent_hash":
                if key is None:
                    raise ValueError("consistent_hash needs a key")
                ring = self._rings.get(capability)
                if ring is None:
                    ring = self._rings[capability] = _Ring(self._healthy(capability))
                chosen = ring.pick(key, exclude)
                return [chosen] if chosen else []
            if strategy == "least_loaded":
                return [self._least_loaded(routes)]
        raise ValueError(f"unknown routing strategy {strategy!r}; use one of {STRATEGIES}")

    def _least_loaded(self, routes: list[Route]) -> Route:
        def score(route: Route) -> tuple[int, float]:
            load = self._load_of(route.node)
            return (load.mailbox, load.cpu) if load else (0, 0.0)

        best = min(score(r) for r in routes)
        tied = [r for r in routes if score(r) == best]
        return tied[next(self._counter) % len(tied)]

    # --- watch thread -------------------------------------------------------

    def _parse(self, key: str) -> tuple[str, str, str] | None:
        parts = ClusterKeys.tail(self._keys.routes, key).split("/")
        return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None

    def _reset(self, kvs: list[KeyValue], revision: int) -> None:
        table: dict[str, dict[tuple[str, str], Route]] = {}
        for kv in kvs:
            parsed = self._parse(kv.key)
            if parsed:
                cap, node, actor = parsed
                address = str(decode(kv.value).get("address", ""))
                table.setdefault(cap, {})[(node, actor)] = Route(node, actor, address)
        with self._lock:
            self._table = table
            self._rings.clear()
            self._healthy_cache.clear()
            self.version += 1
            have = {
                (r.actor, cap)
                for cap, routes in table.items()
                for r in routes.values()
                if r.node == self.node
            }
            missing = any(
                (actor, cap) not in have for actor, (caps, _) in self._mine.items() for cap in caps
            )
        if missing:
            self.on_missing()

    def _event(self, event: WatchEvent) -> None:
        parsed = self._parse(event.kv.key)
        if not parsed:
            return
        cap, node, actor = parsed
        with self._lock:
            held = self._table.setdefault(cap, {})
            if event.kind == "put":
                address = str(decode(event.kv.value).get("address", ""))
                held[(node, actor)] = Route(node, actor, address)
            else:
                held.pop((node, actor), None)
            self._rings.pop(cap, None)
            self._healthy_cache.pop(cap, None)
            self.version += 1
            mine = self._mine.get(actor) if node == self.node else None
            missing = event.kind == "delete" and mine is not None and cap in mine[0]
        if missing:
            self.on_missing()
