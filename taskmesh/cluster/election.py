"""Leader election with a fencing token, after etcd's own recipe.

Every candidate puts ``election/<lease-hex>`` under its lease; the key with
the lowest create revision leads. Keys with a lower create revision can only
disappear, never appear, so a watch-fed view that shows our key lowest
proves leadership. The leader's **fencing token** is that key's create
revision: `Election.guarded_txn` only applies while the key still exists
with that revision, so a leader that lost its lease (it was frozen,
partitioned) cannot act even before it notices.

A leader whose lease is lost is demoted at once, and campaigns again with
its next lease.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from taskmesh.errors import FencingError

from .etcd import (
    Compare,
    EtcdClient,
    KeyValue,
    LeaseKeeper,
    Op,
    PrefixWatch,
    Put,
    TxnResult,
    WatchEvent,
)
from .keys import ClusterKeys

__all__ = ["Election", "Fence"]

_log = logging.getLogger("taskmesh.cluster.election")


class Fence:
    """Leadership as of one election: the leader key and its create revision.

    Capture it when duties start (``election.fence``); its guarded writes
    fail with `FencingError` once that leadership has ended, whatever this
    process believes.
    """

    def __init__(self, client: EtcdClient, key: str, token: int) -> None:
        self._client = client
        self.key = key
        self.token = token

    def txn(
        self,
        success: Sequence[Op],
        *,
        compare: Sequence[Compare] = (),
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        """Apply ``success`` if still leader and ``compare`` holds.

        Raises `FencingError` if leadership ended. If only ``compare``
        failed, ``failure`` ran and the result says ``succeeded=False``.
        """
        guard = Compare(self.key, "create", "==", self.token)
        result = self._client.txn([guard, *compare], success, failure)
        if result.succeeded:
            return result
        if not compare or not self._still_leader():
            raise FencingError(f"fencing token {self.token} is no longer valid")
        return result

    def put(self, key: str, value: bytes, *, lease: int | None = None) -> int:
        """Write ``key`` only while still leader; returns the store revision."""
        return self.txn([Put(key, value, lease)]).revision

    def _still_leader(self) -> bool:
        kv = self._client.get(self.key)
        return kv is not None and kv.create_revision == self.token


class Election:
    """Campaigns for leadership of ``keys.election`` while this node holds a lease.

    ``on_elected(fence)`` and ``on_demoted()`` run on the watch thread
    (``taskmesh-watch:election``) or, for a demotion caused by a lost
    lease, on the lease thread (``taskmesh-lease``). They never overlap.
    """

    def __init__(
        self,
        client: EtcdClient,
        keeper: LeaseKeeper,
        keys: ClusterKeys,
        node: str,
        *,
        on_elected: Callable[[Fence], None] | None = None,
        on_demoted: Callable[[], None] | None = None,
    ) -> None:
        self._client = client
        self._keeper = keeper
        self._prefix = keys.election
        self.node = node
        self._on_elected = [on_elected] if on_elected else []
        self._on_demoted = [on_demoted] if on_demoted else []
        self._lock = threading.RLock()
        self._view: dict[str, KeyValue] = {}
        self._my_key: str | None = None
        self._fence: Fence | None = None
        self._watch = PrefixWatch(
            client, self._prefix, on_reset=self._reset, on_event=self._event, name="election"
        )
        keeper.on_acquired(self._campaign)
        keeper.on_lost(self._lease_lost)

    def subscribe(
        self,
        on_elected: Callable[[Fence], None] | None = None,
        on_demoted: Callable[[], None] | None = None,
    ) -> None:
        """Add leadership callbacks (threads as in the class docstring)."""
        if on_elected:
            self._on_elected.append(on_elected)
        if on_demoted:
            self._on_demoted.append(on_demoted)

    def start(self, *, timeout: float = 10.0) -> None:
        """Start the watch; campaigning starts with each lease."""
        self._watch.start(wait=timeout)

    def stop(self) -> None:
        """Stop watching and step down (the key goes with the lease)."""
        self._watch.stop()
        self._demote()

    # --- state --------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """Whether this node leads, as far as it knows (act only through `fence`)."""
        return self._fence is not None

    @property
    def fence(self) -> Fence | None:
        """The current leadership's fence, or None when not leading."""
        return self._fence

    @property
    def token(self) -> int | None:
        """The fencing token while leading."""
        fence = self._fence
        return fence.token if fence else None

    def leader(self) -> str | None:
        """The leading node's id, from the watch-fed view."""
        with self._lock:
            first = self._lowest()
            return first.value.decode() if first else None

    def guarded_txn(
        self,
        success: Sequence[Op],
        *,
        compare: Sequence[Compare] = (),
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        """`Fence.txn` with the current fence; `FencingError` when not leading."""
        fence = self._fence
        if fence is None:
            raise FencingError(f"node {self.node!r} is not the leader")
        return fence.txn(success, compare=compare, failure=failure)

    def guarded_put(self, key: str, value: bytes, *, lease: int | None = None) -> int:
        """`Fence.put` with the current fence; `FencingError` when not leading."""
        return self.guarded_txn([Put(key, value, lease)]).revision

    # --- campaign (lease thread) ------------------------------------------------

    def _campaign(self, lease: int) -> None:
        key = f"{self._prefix}{lease:x}"
        held = self._client.create(key, self.node.encode(), lease=lease)
        if held is not None and held.value.decode() != self.node:
            _log.error("election key %s is held by %r", key, held.value)
            return
        with self._lock:
            self._my_key = key
            # Our key enters the view only through the watch: a view that
            # holds it also holds every key created before it.
            self._check()

    def _lease_lost(self, lease: int) -> None:
        with self._lock:
            self._my_key = None
            self._demote()

    # --- watch thread -------------------------------------------------------

    def _reset(self, kvs: list[KeyValue], revision: int) -> None:
        with self._lock:
            self._view = {kv.key: kv for kv in kvs}
            self._check()

    def _event(self, event: WatchEvent) -> None:
        with self._lock:
            if event.kind == "delete":
                self._view.pop(event.kv.key, None)
            else:
                self._view[event.kv.key] = event.kv
            self._check()

    def _lowest(self) -> KeyValue | None:
        return min(self._view.values(), key=lambda kv: kv.create_revision, default=None)

    def _check(self) -> None:
        first = self._lowest()
        mine = self._my_key
        if mine is not None and first is not None and first.key == mine:
            if self._fence is None or self._fence.key != mine:
                self._fence = Fence(self._client, mine, first.create_revision)
                _log.info("node %s elected leader (token %d)", self.node, first.create_revision)
                for hook in list(self._on_elected):
                    self._safe(hook, self._fence)
        elif self._fence is not None:
            self._demote()

    def _demote(self) -> None:
        with self._lock:
            if self._fence is None:
                return
            self._fence = None
            _log.info("node %s is no longer the leader", self.node)
            for hook in list(self._on_demoted):
                self._safe(hook)

    @staticmethod
    def _safe(hook: Callable[..., None], *args: object) -> None:
        try:
            hook(*args)
        except Exception:
            _log.exception("election callback failed")
