"""`ShardMap`: the watch-fed view of where every entity type's shards live.

One etcd watch on ``entities/`` (see :mod:`~taskmesh.entities.layout`)
feeds it on every node and on every client that sends to entities. A
sender reads the owner of a shard from a plain list (``TypeView.owners``),
so routing a message costs no etcd round trip and no lock; a change takes
effect on every process as fast as etcd's watch delivers it.

``revision`` is the highest etcd revision applied: a message routed by an
assignment of revision R is held by a receiver whose view is older than R
until its view catches up (see :mod:`~taskmesh.entities.shards`).

Listeners run on the watch thread (``taskmesh-watch:entities``) after each
change, with the type that changed; they must be quick.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from taskmesh.cluster.etcd import EtcdClient, KeyValue, PrefixWatch, WatchEvent
from taskmesh.entities.layout import Assignment, EntityKeys, Handoff, HostRecord, Rebalance
from taskmesh.errors import ClusterError

__all__ = ["ShardMap", "TypeView"]

log = logging.getLogger("taskmesh.entities")

Listener = Callable[[str], None]

_READS_PER_S = 20.0
"""etcd reads a second allowed for types missing from the view."""


class TypeView:
    """One entity type as the watch shows it. Written by the watch thread
    under the map's lock; ``owners`` may be read by any thread without it
    (a list whose items are replaced whole)."""

    __slots__ = ("assigned", "handoffs", "hosts", "name", "owners", "rebalance", "shards")

    def __init__(self, name: str) -> None:
        self.name = name
        self.hosts: dict[str, HostRecord] = {}
        self.shards = 0
        """The type's shard count, from its hosts (kept when they all leave)."""
        self.owners: list[Assignment | None] = []
        self.assigned: dict[int, Assignment] = {}
        self.handoffs: dict[int, Handoff] = {}
        self.rebalance: Rebalance | None = None

    def _resize(self) -> None:
        counts = Counter(h.shards for h in self.hosts.values() if h.shards)
        if counts:
            shards, _ = counts.most_common(1)[0]
            if len(counts) > 1:
                log.error(
                    "nodes hosting entity type %r disagree on its shard count: %s",
                    self.name, dict(counts),
                )  # fmt: skip
            if shards != self.shards:
                self.shards = shards
        owners: list[Assignment | None] = [None] * self.shards
        for shard, assignment in self.assigned.items():
            if shard < self.shards:
                owners[shard] = assignment
        self.owners = owners

    def owner(self, shard: int) -> Assignment | None:
        owners = self.owners
        return owners[shard] if shard < len(owners) else None


class ShardMap:
    """See the module docstring. Thread-safe."""

    def __init__(self, client: EtcdClient, keys: EntityKeys) -> None:
        self.keys = keys
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._types: dict[str, TypeView] = {}
        self._listeners: list[Listener] = []
        self.revision = 0
        self._client = client
        self._budget = _READS_PER_S
        self._budget_at = time.monotonic()
        self._paused_until = 0.0
        self._synced = threading.Event()
        self._watch = PrefixWatch(
            client, keys.root, on_reset=self._reset, on_event=self._event, name="entities"
        )

    def start(self, *, timeout: float = 10.0) -> ShardMap:
        """Start the watch and wait for its first snapshot."""
        self._watch.start(wait=timeout)
        return self

    def stop(self) -> None:
        self._watch.stop()

    def wait_revision(self, revision: int, *, timeout: float) -> bool:
        """Wait until the view has applied ``revision`` (a write of ours);
        False after ``timeout`` s (any thread but the watch's)."""
        with self._changed:
            return self._changed.wait_for(lambda: self.revision >= revision, timeout)

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(entity_type)`` after each change (watch thread)."""
        self._listeners.append(listener)

    # --- reading (any thread) ----------------------------------------------------

    def view(self, entity_type: str) -> TypeView | None:
        """The type's view, or None if no node ever hosted it (as far as we saw)."""
        return self._types.get(entity_type)

    def types(self) -> list[str]:
        with self._lock:
            return sorted(self._types)

    def snapshot(
        self, entity_type: str
    ) -> tuple[dict[str, HostRecord], dict[int, Assignment], dict[int, Handoff], int]:
        """Copies of the type's hosts, assignments and handoffs, and its shard count."""
        with self._lock:
            view = self._types.get(entity_type)
            if view is None:
                return {}, {}, {}, 0
            return dict(view.hosts), dict(view.assigned), dict(view.handoffs), view.shards

    def read_through(self, entity_type: str) -> TypeView | None:
        """Read a type the watch has not shown yet from etcd (its hosts only):
        a node may have hosted it a moment ago, and a message to it must not
        fail for that. Rate-limited (a flood of sends to an unknown type
        cannot flood etcd); returns the view if the type has hosts."""
        now = time.monotonic()
        with self._lock:
            self._budget = min(_READS_PER_S, self._budget + (now - self._budget_at) * _READS_PER_S)
            self._budget_at = now
            if self._budget < 1 or now < self._paused_until:
                return None
            self._budget -= 1
        try:
            kvs, _ = self._client.get_prefix(f"{self.keys.hosts}{entity_type}/")
        except ClusterError as error:
            self._paused_until = time.monotonic() + 5.0
            log.info("reading entity type %r from etcd failed: %s", entity_type, error)
            return None
        with self._lock:
            view = self._types.get(entity_type)
            if not kvs or (view is not None and view.shards):
                return view if view is not None and view.shards else None
            for kv in kvs:  # the watch brings the same records, and later changes
                self._apply(kv, deleted=False)
            view = self._types.get(entity_type)
        return view if view is not None and view.shards else None

    # --- the watch thread ----------------------------------------------------------

    def _type(self, name: str) -> TypeView:
        view = self._types.get(name)
        if view is None:
            view = self._types[name] = TypeView(name)
        return view

    def _apply(self, kv: KeyValue, deleted: bool) -> str | None:
        parts = self.keys.split(kv.key)
        if parts is None:
            return None
        kind, name, rest = parts
        view = self._type(name)
        if kind == "hosts":
            if deleted:
                view.hosts.pop(rest, None)
            else:
                view.hosts[rest] = HostRecord.from_kv(rest, kv)
            view._resize()
        elif kind in ("shards", "handoffs") and rest.isdigit():
            shard = int(rest)
            if kind == "handoffs":
                if deleted:
                    view.handoffs.pop(shard, None)
                else:
                    view.handoffs[shard] = Handoff.from_kv(shard, kv)
                return name
            if deleted:
                view.assigned.pop(shard, None)
            else:
                view.assigned[shard] = Assignment.from_kv(shard, kv)
            if shard < view.shards:
                owners = list(view.owners)
                owners[shard] = None if deleted else view.assigned[shard]
                view.owners = owners
        elif kind == "rebalances":
            view.rebalance = None if deleted else Rebalance.from_kv(kv)
        return name

    def _reset(self, kvs: list[KeyValue], revision: int) -> None:
        with self._lock:
            for view in self._types.values():
                view.hosts.clear()
                view.assigned.clear()
                view.handoffs.clear()
                view.rebalance = None
            for kv in kvs:
                self._apply(kv, deleted=False)
            for view in self._types.values():
                view._resize()
            self.revision = max(self.revision, revision)
            self._changed.notify_all()
            names = list(self._types)
        self._synced.set()
        for name in names:
            self._notify(name)

    def _event(self, event: WatchEvent) -> None:
        with self._lock:
            name = self._apply(event.kv, deleted=event.kind == "delete")
            self.revision = max(self.revision, event.kv.mod_revision)
            self._changed.notify_all()
        if name is not None:
            self._notify(name)

    def _notify(self, name: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(name)
            except Exception:
                log.exception("shard map listener failed")
