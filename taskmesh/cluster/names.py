"""Cluster-wide names: claimed in etcd, looked up from a watch-fed cache.

A claim is a create-if-absent transaction on ``names/<name>`` bound to the
owner's lease, so at most one node holds a name and a dead node's names
vanish with its lease. Lookups read the local cache (no etcd round trip on
the message path). After this node gets a new lease (etcd outage, expiry)
it re-claims every name it held; a name another node took meanwhile is
reported to ``on_lost`` listeners.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from taskmesh.errors import ClusterError, NameTaken

from .etcd import (
    Compare,
    Delete,
    EtcdClient,
    Get,
    KeyValue,
    LeaseKeeper,
    PrefixWatch,
    Put,
    WatchEvent,
)
from .keys import ClusterKeys, decode, encode, validate_name

__all__ = ["NameRecord", "Names"]

_log = logging.getLogger("taskmesh.cluster.names")

_CHUNK = 64
"""Names per transaction: etcd refuses more than 128 operations per branch
(``--max-txn-ops``), and a registration also puts the names' routes."""


@dataclass(frozen=True, slots=True)
class NameRecord:
    """Who holds a name: the owner node's id and the holder's transport address."""

    name: str
    node: str
    address: str
    incarnation: str = ""
    """The holder's membership token (see `MemberInfo.incarnation`)."""

    def to_bytes(self) -> bytes:
        return encode({"node": self.node, "address": self.address, "incarnation": self.incarnation})

    @classmethod
    def from_kv(cls, name: str, kv: KeyValue) -> NameRecord:
        raw = decode(kv.value)
        return cls(
            name,
            str(raw.get("node", "")),
            str(raw.get("address", "")),
            str(raw.get("incarnation", "")),
        )


class Names:
    """Claims, releases and looks up cluster-wide names for node ``node``.

    Listeners added with `on_lost` run on the lease thread
    (``taskmesh-lease``) and receive a name this node held but could not
    re-claim.
    """

    def __init__(
        self,
        client: EtcdClient,
        keeper: LeaseKeeper,
        keys: ClusterKeys,
        node: str,
        *,
        incarnation: str = "",
    ) -> None:
        self.incarnation = incarnation
        self._client = client
        self._keeper = keeper
        self._keys = keys
        self.node = node
        self._lock = threading.Lock()
        self._cache: dict[str, NameRecord] = {}
        self._owned: dict[str, NameRecord] = {}
        self._lost_listeners: list[Callable[[str], None]] = []
        self.on_missing: Callable[[], None] = lambda: None
        """Called (watch thread) when a name this node holds vanished from etcd."""
        self._watch = PrefixWatch(
            client, keys.names, on_reset=self._reset, on_event=self._event, name="names"
        )
        keeper.on_acquired(self._reclaim)

    def start(self, *, timeout: float = 10.0) -> None:
        """Start the watch and wait for the first snapshot."""
        self._watch.start(wait=timeout)

    def stop(self) -> None:
        """Stop the watch. Held names go with the lease."""
        self._watch.stop()

    def on_lost(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(name)`` when a held name could not be re-claimed."""
        self._lost_listeners.append(listener)

    # --- claims -------------------------------------------------------------

    def claim(self, name: str, address: str) -> NameRecord:
        """Claim ``name`` for this node; raise `NameTaken` if another node holds it.

        Claiming a name this node already holds updates its address.
        Raises `LeaseLost` while this node has no valid lease.
        """
        record, created = self._claim(name, address, self._keeper.require())
        if not created and not self.is_mine(record):
            raise NameTaken(f"name {name!r} is held by node {record.node!r}")
        return record

    def get_or_create(self, name: str, address: str) -> tuple[NameRecord, bool]:
        """Claim ``name`` unless someone holds it; returns (holder, claimed_by_us)."""
        record, created = self._claim(name, address, self._keeper.require())
        return record, created or self.is_mine(record)

    def get_or_create_under(self, name: str, address: str, lease: int) -> tuple[NameRecord, bool]:
        """`get_or_create` under a lease the caller already holds."""
        record, created = self._claim(name, address, lease)
        return record, created or self.is_mine(record)

    def release(self, name: str) -> bool:
        """Give up ``name`` if this node holds it; True if a key was deleted."""
        with self._lock:
            mine = self._owned.pop(name, None)
        if mine is None:
            return False
        key = self._keys.name(name)
        result = self._client.txn(
            [Compare(key, "value", "==", mine.to_bytes())],
            [Delete(key)],
        )
        with self._lock:
            if self._cache.get(name) == mine:
                del self._cache[name]
        return result.succeeded

    def claim_batch(
        self, items: Sequence[tuple[str, str]], lease: int
    ) -> list[tuple[NameRecord, bool]]:
        """Claim many ``(name, address)`` pairs under ``lease``, one transaction per chunk.

        Returns, in order, each name's holder and whether this node holds it
        now. Each name keeps create-if-absent semantics: one transaction
        creates every absent name of a chunk at once; a chunk in which some
        name exists is retried without it, and that name goes the one-by-one
        way (a re-claim of our own, or a name another node holds).
        """
        for name, _ in items:
            validate_name(name)
        results: dict[int, tuple[NameRecord, bool]] = {}
        for start in range(0, len(items), _CHUNK):
            chunk = list(range(start, min(start + _CHUNK, len(items))))
            self._claim_chunk(items, chunk, lease, results)
        return [results[i] for i in range(len(items))]

    def _claim_chunk(
        self,
        items: Sequence[tuple[str, str]],
        chunk: list[int],
        lease: int,
        results: dict[int, tuple[NameRecord, bool]],
    ) -> None:
        seen: set[str] = set()
        fresh: list[int] = []
        for i in chunk:  # a name twice in one transaction is an error in etcd
            (fresh if items[i][0] not in seen else []).append(i)
            seen.add(items[i][0])
        one_by_one = [i for i in chunk if i not in set(fresh)]
        for _ in range(3):
            if not fresh:
                break
            records = [self.record(items[i][0], items[i][1]) for i in fresh]
            keys = [self._keys.name(r.name) for r in records]
            result = self._client.txn(
                [Compare(key, "create", "==", 0) for key in keys],
                [Put(key, r.to_bytes(), lease) for key, r in zip(keys, records, strict=True)],
                [Get(key) for key in keys],
            )
            if result.succeeded:
                for i, record in zip(fresh, records, strict=True):
                    self._remember(record)
                    results[i] = (record, True)
                fresh = []
                break
            held = {i for i, got in zip(fresh, result.gets, strict=True) if got}
            one_by_one += sorted(held)
            fresh = [i for i in fresh if i not in held]
        for i in sorted([*one_by_one, *fresh]):
            name, address = items[i]
            record, created = self._claim(name, address, lease)
            results[i] = (record, created or self.is_mine(record))

    def record(self, name: str, address: str) -> NameRecord:
        """The record this node writes for ``name`` at ``address``."""
        return NameRecord(name, self.node, address, self.incarnation)

    def is_mine(self, record: NameRecord) -> bool:
        """Written by this process (not merely by a node of the same name)."""
        return record.node == self.node and record.incarnation in (self.incarnation, "")

    def forget(self, name: str) -> None:
        """Stop holding ``name`` here without touching etcd (see `withdraw`)."""
        with self._lock:
            self._owned.pop(name, None)

    def withdraw(self, record: NameRecord) -> bool:
        """Delete ``record`` from etcd if it is still exactly there; True if deleted."""
        key = self._keys.name(record.name)
        result = self._client.txn([Compare(key, "value", "==", record.to_bytes())], [Delete(key)])
        return result.succeeded

    def held(self, name: str) -> NameRecord | None:
        """The record of ``name`` if this node holds it under its current lease."""
        with self._lock:
            return self._owned.get(name)

    def _claim(self, name: str, address: str, lease: int) -> tuple[NameRecord, bool]:
        validate_name(name)
        for _ in range(10):
            outcome = self._try_claim(name, address, lease)
            if outcome is not None:
                return outcome
        raise ClusterError(f"name {name!r} kept changing while being claimed")

    def _try_claim(self, name: str, address: str, lease: int) -> tuple[NameRecord, bool] | None:
        key = self._keys.name(name)
        mine = self.record(name, address)
        result = self._client.txn(
            [Compare(key, "create", "==", 0)],
            [Put(key, mine.to_bytes(), lease)],
            [Get(key)],
        )
        if result.succeeded:
            self._remember(mine)
            return mine, True
        held = result.gets[0]
        if not held:  # deleted between compare and read: try again
            return None
        record = NameRecord.from_kv(name, held[0])
        if not self.is_mine(record):
            return record, False
        # Ours already (a re-claim, or a new address): move it to this lease.
        moved = self._client.txn(
            [Compare(key, "mod", "==", held[0].mod_revision)],
            [Put(key, mine.to_bytes(), lease)],
        )
        if not moved.succeeded:
            return None
        self._remember(mine)
        return mine, False

    def remember(self, record: NameRecord) -> None:
        """Record a name this node claimed in a transaction of its own making."""
        self._remember(record)

    def _remember(self, record: NameRecord) -> None:
        with self._lock:
            self._owned[record.name] = record
            self._cache[record.name] = record

    def _reclaim(self, lease: int) -> None:
        """Lease thread: claim every held name again under the new lease, in batches."""
        with self._lock:
            owned = list(self._owned.values())
        outcomes = self.claim_batch([(r.name, r.address) for r in owned], lease)
        for record, (holder, ours) in zip(owned, outcomes, strict=True):
            if ours:
                continue
            _log.warning("name %r was taken by %r while etcd was away", record.name, holder.node)
            with self._lock:
                self._owned.pop(record.name, None)
            for listener in list(self._lost_listeners):
                try:
                    listener(record.name)
                except Exception:
                    _log.exception("name-lost listener failed")

    # --- lookups (cache) ----------------------------------------------------

    def lookup(self, name: str) -> NameRecord | None:
        """Who holds ``name``, from the local cache."""
        with self._lock:
            return self._cache.get(name)

    def fetch(self, name: str) -> NameRecord | None:
        """Who holds ``name``, read from etcd (one round trip), for a name
        the cache may not have yet. Raises `ClusterError` when etcd fails."""
        kv = self._client.get(self._keys.name(name))
        return NameRecord.from_kv(name, kv) if kv is not None else None

    def all(self) -> dict[str, NameRecord]:
        """Every known name."""
        with self._lock:
            return dict(self._cache)

    def owned(self) -> set[str]:
        """Names this node holds."""
        with self._lock:
            return set(self._owned)

    def _reset(self, kvs: list[KeyValue], revision: int) -> None:
        fresh = {}
        for kv in kvs:
            name = ClusterKeys.tail(self._keys.names, kv.key)
            fresh[name] = NameRecord.from_kv(name, kv)
        with self._lock:
            self._cache = fresh
            missing = any(name not in fresh for name in self._owned)
        if missing:
            self.on_missing()

    def _event(self, event: WatchEvent) -> None:
        name = ClusterKeys.tail(self._keys.names, event.kv.key)
        with self._lock:
            if event.kind == "delete":
                self._cache.pop(name, None)
            else:
                self._cache[name] = NameRecord.from_kv(name, event.kv)
            missing = event.kind == "delete" and name in self._owned
        if missing:
            self.on_missing()
