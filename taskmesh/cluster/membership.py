"""Membership: who is in the cluster, fed by a watch on ``members/``.

Each node writes its `MemberInfo` at ``members/<node>`` under its own lease,
once per lease: at rest nothing is rewritten, so nothing wakes the other
nodes (load lives apart, in `LoadBoard`). When the node dies its lease
expires and the key goes, which every other node sees as a leave. Each node
keeps a local view of all members, so reading it costs no etcd round trip.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from taskmesh.errors import ClusterError, NodeNameTaken

from .etcd import Compare, EtcdClient, Get, KeyValue, LeaseKeeper, PrefixWatch, Put, WatchEvent
from .keys import ClusterKeys, decode, encode, validate_name

__all__ = ["Load", "MemberEvent", "MemberInfo", "Membership"]

_log = logging.getLogger("taskmesh.cluster.membership")


@dataclass(frozen=True, slots=True)
class Load:
    """A node's published load: system CPU and memory in percent, queued
    messages, messages received so far, and their rate per second."""

    cpu: float = 0.0
    memory: float = 0.0
    mailbox: int = 0
    messages: int = 0
    rate: float = 0.0


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """What a node publishes about itself. ``lease`` is its etcd lease id."""

    node: str
    address: str
    host: str = ""
    pid: int = 0
    started: float = 0.0
    capabilities: frozenset[str] = frozenset()
    public_key: str | None = None
    load: Load = field(default_factory=Load)
    lease: int = 0
    incarnation: str = ""
    """A token of this process's membership: tells this node from a later
    process started under the same name."""

    def to_bytes(self) -> bytes:
        return encode(
            {
                "node": self.node,
                "address": self.address,
                "host": self.host,
                "pid": self.pid,
                "started": self.started,
                "capabilities": sorted(self.capabilities),
                "public_key": self.public_key,
                "incarnation": self.incarnation,
            }
        )

    @classmethod
    def from_kv(cls, kv: KeyValue) -> MemberInfo:
        raw = decode(kv.value)
        load = raw.get("load") or {}
        return cls(
            node=str(raw.get("node", "")),
            address=str(raw.get("address", "")),
            host=str(raw.get("host", "")),
            pid=int(raw.get("pid", 0)),
            started=float(raw.get("started", 0.0)),
            capabilities=frozenset(str(c) for c in raw.get("capabilities", ())),
            public_key=raw.get("public_key"),
            load=Load(
                float(load.get("cpu", 0.0)),
                float(load.get("memory", 0.0)),
                int(load.get("mailbox", 0)),
                int(load.get("messages", 0)),
            ),
            lease=kv.lease,
            incarnation=str(raw.get("incarnation", "")),
        )


@dataclass(frozen=True, slots=True)
class MemberEvent:
    """A member joined, left, or published a new record (``update``)."""

    kind: Literal["join", "leave", "update"]
    member: MemberInfo


MemberListener = Callable[[MemberEvent], None]


class Membership:
    """This node's registration plus the watch-fed view of every member.

    Listeners added with `subscribe` run on the watch thread
    (``taskmesh-watch:members``), one event at a time, in order.
    """

    def __init__(
        self,
        client: EtcdClient,
        keeper: LeaseKeeper,
        keys: ClusterKeys,
        node: str,
        *,
        address: str,
        capabilities: frozenset[str] = frozenset(),
        public_key: str | None = None,
        incarnation: str = "",
    ) -> None:
        self._client = client
        self._keeper = keeper
        self._keys = keys
        self.node = validate_name(node, "node id")
        for cap in capabilities:
            validate_name(cap, "capability")
        self._me = MemberInfo(
            node=node,
            address=address,
            host=socket.gethostname(),
            pid=os.getpid(),
            started=time.time(),
            capabilities=frozenset(capabilities),
            public_key=public_key,
            incarnation=incarnation,
        )
        self.on_missing: Callable[[], None] = lambda: None
        """Called (watch thread) when this node's member record vanished from etcd."""
        self.conflict: NodeNameTaken | None = None
        self.conflict_lease = 0
        """The lease holding our name when ``conflict`` was last seen."""
        """Set while another live node holds this node's name."""
        self._lock = threading.Lock()
        self._view: dict[str, MemberInfo] = {}
        self._listeners: list[MemberListener] = []
        self._watch = PrefixWatch(
            client,
            keys.members,
            on_reset=self._reset,
            on_event=self._event,
            name="members",
        )
        keeper.on_acquired(self._register)

    # --- view -------------------------------------------------------------

    def members(self) -> dict[str, MemberInfo]:
        """Every live member, by node id, as last seen (no etcd round trip)."""
        with self._lock:
            return dict(self._view)

    def get(self, node: str) -> MemberInfo | None:
        """One member from the view, or None."""
        with self._lock:
            return self._view.get(node)

    @property
    def me(self) -> MemberInfo:
        """The record this node publishes."""
        return self._me

    def subscribe(self, listener: MemberListener) -> None:
        """Call ``listener(event)`` on the watch thread for every join, leave and update."""
        self._listeners.append(listener)

    # --- lifecycle --------------------------------------------------------

    def start(self, *, timeout: float = 10.0) -> None:
        """Start the watch (waits for its first snapshot)."""
        self._watch.start(wait=timeout)

    def stop(self) -> None:
        """Stop watching. The key goes with the lease (see `LeaseKeeper.stop`)."""
        self._watch.stop()

    def deregister(self) -> None:
        """Delete this node's member key now (a graceful leave)."""
        self._client.delete(self._keys.member(self.node))

    # --- registration (lease thread) ---------------------------------------------

    def _register(self, lease: int) -> None:
        """Put the member record under ``lease``, unless another process holds the name.

        Ours from an earlier lease (same incarnation) is moved to this one; a
        record of another incarnation under a live lease is another node:
        refused with `NodeNameTaken`, and retried until its lease is gone.
        """
        key = self._keys.member(self.node)
        me = self._me.to_bytes()
        for _ in range(10):
            result = self._client.txn(
                [Compare(key, "create", "==", 0)], [Put(key, me, lease)], [Get(key)]
            )
            if result.succeeded:
                self.conflict = None
                return
            if not result.gets[0]:
                continue  # gone between the compare and the read
            held = result.gets[0][0]
            other = MemberInfo.from_kv(held)
            if other.incarnation != self._me.incarnation and held.lease != lease:
                error = NodeNameTaken(
                    f"node name {self.node!r} is in use by a live node "
                    f"(pid {other.pid} on {other.host or '?'}, at {other.address or '?'}): "
                    "pick another --name, or stop that node first"
                )
                if self.conflict is None:
                    _log.info("%s; waiting to see whether its lease is renewed", error)
                self.conflict = error
                self.conflict_lease = held.lease
                raise error
            moved = self._client.txn(
                [Compare(key, "mod", "==", held.mod_revision)], [Put(key, me, lease)]
            )
            if moved.succeeded:
                self.conflict = None
                return
        raise ClusterError(f"member record of {self.node!r} kept changing while registering")

    # --- watch thread -----------------------------------------------------

    def _reset(self, kvs: list[KeyValue], revision: int) -> None:
        fresh = {m.node: m for m in map(MemberInfo.from_kv, kvs) if m.node}
        with self._lock:
            old, self._view = self._view, fresh
        if self.node not in fresh:
            self.on_missing()
        for node, info in old.items():
            if node not in fresh:
                self._emit(MemberEvent("leave", info))
        for node, info in fresh.items():
            if node not in old:
                self._emit(MemberEvent("join", info))
            elif old[node] != info:
                self._emit(MemberEvent("update", info))

    def _event(self, event: WatchEvent) -> None:
        node = ClusterKeys.tail(self._keys.members, event.kv.key)
        if event.kind == "delete":
            with self._lock:
                gone = self._view.pop(node, None)
            if gone is not None:
                self._emit(MemberEvent("leave", gone))
            if node == self.node:
                self.on_missing()
            return
        info = MemberInfo.from_kv(event.kv)
        if not info.node:
            return
        with self._lock:
            before = self._view.get(node)
            self._view[node] = info
        self._emit(MemberEvent("join" if before is None else "update", info))

    def _emit(self, event: MemberEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                _log.exception("member listener failed")
