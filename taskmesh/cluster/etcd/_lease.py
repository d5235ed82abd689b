"""`LeaseKeeper`: one etcd lease, kept alive by a thread, replaced when lost.

Lifecycle of the lease it holds::

    (none) --grant--> acquired --refresh ok--> acquired
       ^                 |
       |                 +-- refresh says TTL 0, or no refresh succeeded
       |                 |   before the local deadline --> lost
       +-----------------+   (fires on_lost, then grants a new lease)

The local deadline is the send time of the last successful refresh plus
the TTL it returned: etcd cannot expire the lease earlier than that, so a
node that could not reach etcd declares the lease lost no later than etcd
does. After a loss the keeper grants a new lease, runs the ``on_acquired``
hooks (which re-put the node's keys), and only then revokes the old lease,
so the node's keys never vanish while etcd is reachable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from taskmesh.errors import ClusterError, ConfigError, EtcdUnavailable, LeaseLost

from ._client import EtcdClient

__all__ = ["LeaseKeeper"]

_log = logging.getLogger("taskmesh.cluster.lease")

LeaseHook = Callable[[int], None]


class LeaseKeeper:
    """Grants a lease of ``ttl`` seconds and keeps it alive on its own thread.

    Hooks registered with `on_acquired` and `on_lost` run on the keeper's
    thread (``taskmesh-lease``) and receive the lease id. An acquired hook
    that raises `ClusterError` (etcd went away mid-way) is retried until it
    succeeds for that lease, so hooks must be idempotent.
    """

    def __init__(
        self,
        client: EtcdClient,
        ttl: int,
        *,
        retry_interval: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl < 2:  # etcd's own minimum is 2 s with its default timings
            raise ConfigError(f"lease TTL must be at least 2 seconds, not {ttl}")
        self._client = client
        self.ttl = ttl
        self._retry = retry_interval
        self._clock = clock
        self._acquired_hooks: list[LeaseHook] = []
        self._lost_hooks: list[LeaseHook] = []
        self._renewed_hooks: list[LeaseHook] = []
        self._failed_hooks = 0  # the lease whose hooks last failed (logged once)
        self._last_ok = 0.0
        self.longest_gap = 0.0
        """The longest time so far between two keep-alives etcd accepted (seconds):
        how close this process came to losing its lease (a starved thread, a slow etcd)."""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._lease: int | None = None
        self._published = False
        self._again = False  # republish() while the hooks ran: run them once more
        self._deadline = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stale: list[int] = []

    # --- hooks ------------------------------------------------------------

    def on_acquired(self, hook: LeaseHook) -> None:
        """Call ``hook(lease_id)`` for every new lease, on the keeper thread."""
        self._acquired_hooks.append(hook)

    def on_renewed(self, hook: LeaseHook) -> None:
        """Call ``hook(lease_id)`` after each keep-alive etcd accepted, on the keeper
        thread; it must be quick (it delays the next keep-alive)."""
        self._renewed_hooks.append(hook)

    def on_lost(self, hook: LeaseHook) -> None:
        """Call ``hook(lease_id)`` as soon as a lease is known or presumed lost."""
        self._lost_hooks.append(hook)

    # --- state ------------------------------------------------------------

    @property
    def lease_id(self) -> int | None:
        """The current lease while it is valid and its hooks have run, else None."""
        with self._lock:
            return self._lease if self._valid_locked() else None

    @property
    def deadline(self) -> float:
        """The local deadline of the current lease (``clock()`` time), 0.0
        without one: etcd cannot expire the lease before it. Read without a
        lock (one float); for fencing work that must stop when the lease may
        be gone (sharded entities)."""
        return self._deadline if self._lease is not None else 0.0

    def require(self) -> int:
        """The current valid lease id, or raise `LeaseLost`."""
        lease = self.lease_id
        if lease is None:
            raise LeaseLost("no valid etcd lease (etcd unreachable or lease expired)")
        return lease

    def _valid_locked(self) -> bool:
        return self._lease is not None and self._published and self._clock() < self._deadline

    def republish(self) -> None:
        """Run the acquired hooks again under the current lease, soon (any thread).

        For keys deleted behind this node's back while its lease lives: the
        hooks put them back. A lease already lost is replaced as usual.
        """
        with self._lock:
            if self._lease is None:
                return
            if not self._published:
                # The hooks are running (or about to): they may have put a
                # key back before it was deleted, so they run once more.
                self._again = True
                self._wake.set()
                return
            self._published = False
        _log.warning(
            "etcd lease %x: some of this node's keys vanished; registering again", self._lease
        )
        self._wake.set()

    def wait_acquired(self, timeout: float) -> int:
        """Block until a lease is held and published; raise `EtcdUnavailable` on timeout."""
        end = time.monotonic() + timeout
        with self._changed:
            while not self._valid_locked():
                left = end - time.monotonic()
                if left <= 0:
                    raise EtcdUnavailable(f"no etcd lease within {timeout}s")
                self._changed.wait(min(left, 0.1))
            assert self._lease is not None
            return self._lease

    # --- lifecycle --------------------------------------------------------

    def start(self) -> None:
        """Start the keepalive thread (it grants the first lease)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="taskmesh-lease", daemon=True)
        self._thread.start()

    def stop(self, *, revoke: bool = True) -> None:
        """Stop keeping the lease alive; revoke it (deleting its keys) by default."""
        if self._thread is not None:
            _log.info(
                "longest time between two accepted keep-alives: %.2fs (ttl %ds)",
                self.longest_gap, self.ttl,
            )  # fmt: skip
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            lease, self._lease = self._lease, None
            self._published = False
        if revoke and lease is not None:
            try:
                self._client.revoke(lease)
            except ClusterError as exc:
                _log.info("could not revoke lease %x on stop: %s", lease, exc)

    # --- the keepalive thread ----------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                pause = self._step()
            except Exception:
                _log.exception("lease keeper step failed")
                pause = self._retry
            self._wake.wait(pause)
            self._wake.clear()

    def _step(self) -> float:
        with self._lock:
            lease, published = self._lease, self._published
        if lease is None:
            return self._grant()
        if not published:
            return self._publish(lease)
        return self._refresh(lease)

    def _grant(self) -> float:
        sent = self._clock()
        try:
            lease = self._client.grant(self.ttl, patience=0.0)
        except ClusterError as exc:
            _log.debug("lease grant failed: %s", exc)
            return self._retry
        with self._lock:
            self._lease, self._published = lease, False
            self._deadline = sent + self.ttl
        self._last_ok = sent
        _log.info("etcd lease %x granted (ttl %ds)", lease, self.ttl)
        return self._publish(lease)

    def _publish(self, lease: int) -> float:
        with self._lock:
            self._again = False
        try:
            for hook in list(self._acquired_hooks):
                hook(lease)
                # Long re-registrations must not starve the lease they use.
                if self._clock() - self._last_ok >= self.ttl / 3:
                    self._keepalive(lease)
        except ClusterError as exc:
            log = _log.debug if self._failed_hooks == lease else _log.info
            log("registering under lease %x failed, retrying: %s", lease, exc)
            self._failed_hooks = lease
            return self._check_deadline(lease)
        with self._changed:
            if self._again:  # keys vanished while the hooks ran: again, now
                return 0.0
            self._published = True
            self._changed.notify_all()
        self._revoke_stale()
        return self.ttl / 3

    def _keepalive(self, lease: int) -> int:
        """Send one keep-alive; returns the TTL etcd granted (0: the lease expired)."""
        sent = self._clock()
        ttl = self._client.refresh(lease, patience=0.0)
        if ttl > 0:
            with self._lock:
                self._deadline = sent + ttl
            gap = sent - self._last_ok
            if gap > self.ttl * 2 / 3:
                _log.warning(
                    "etcd lease %x kept alive %.1fs after the last keep-alive (ttl %ds): "
                    "this process or etcd is starved of CPU",
                    lease, gap, self.ttl,
                )  # fmt: skip
            self.longest_gap = max(self.longest_gap, gap)
            self._last_ok = sent
        return ttl

    def _refresh(self, lease: int) -> float:
        try:
            ttl = self._keepalive(lease)
        except ClusterError as exc:
            _log.debug("lease refresh failed: %s", exc)
            return self._check_deadline(lease)
        if ttl <= 0:
            _log.warning("etcd lease %x expired", lease)
            self._lose(lease)
            return 0.0
        self._revoke_stale()
        for hook in list(self._renewed_hooks):
            try:
                hook(lease)
            except Exception:
                _log.exception("lease-renewed hook failed")
        return max(0.1, min(self.ttl, ttl) / 3)

    def _check_deadline(self, lease: int) -> float:
        if self._clock() >= self._deadline:
            # With etcd gone the client has said so once; this would only repeat it.
            _log.log(
                logging.WARNING if self._client.reachable else logging.DEBUG,
                "etcd lease %x presumed lost: no refresh before its deadline", lease,
            )  # fmt: skip
            self._lose(lease)
            return 0.0
        return self._retry

    def _lose(self, lease: int) -> None:
        with self._lock:
            if self._lease != lease:
                return
            self._lease, self._published = None, False
            self._stale.append(lease)
        for hook in list(self._lost_hooks):
            try:
                hook(lease)
            except Exception:
                _log.exception("lease-lost hook failed")

    def _revoke_stale(self) -> None:
        """Revoke leases we gave up on, in case etcd kept them (a restart renews them)."""
        while self._stale:
            lease = self._stale[0]
            try:
                self._client.revoke(lease)
            except ClusterError as exc:
                _log.debug("revoking stale lease %x failed: %s", lease, exc)
                return
            self._stale.pop(0)
