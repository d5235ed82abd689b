"""The limiter: one per node or client, it makes every send obey the
cluster's limits.

It watches ``limits/`` and keeps one `CapabilityGate` per limited
capability in ``gates``, the very dict that the process's refs read
(``Locator.limits``): a message to a capability without a limit costs one
dict lookup and nothing else. Its thread (``taskmesh-limits``) takes
tokens and slots from etcd in batches, expires waiting senders at their
deadlines and gives idle slots back; a second thread
(``taskmesh-limits-send``) sends the asks that waited for a token, so
neither ever blocks on a mailbox. A watch on ``limit-slots/`` (started
with the first concurrency limit) wakes senders waiting for a slot.

Slots are held under a lease: a node's own (they go when the node is
lost), a client's own, granted the first time it needs one.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING

from taskmesh.actors.deadletters import DeadLetters
from taskmesh.addressing import Gate
from taskmesh.cluster.etcd import EtcdClient, KeyValue, LeaseKeeper, PrefixWatch, WatchEvent
from taskmesh.errors import ConfigError

from .admission import Fired, QueueGate, run
from .gate import CapabilityGate
from .limits import Limit, LimitStore
from .records import PlatformKeys
from .slots import SlotGate

if TYPE_CHECKING:
    from taskmesh.cluster import ClusterMember
    from taskmesh.locator import Locator

__all__ = ["Limiter", "client_limiter"]

log = logging.getLogger("taskmesh.limits")

_IDLE_WAKE = 1.0


class Limiter:
    """See the module docstring. ``holder`` names this process in the slot
    records (its node id, or the client's id); ``lease`` is the node's
    lease keeper, or (``own_lease``) one the limiter starts when a slot is
    first needed and revokes at ``stop``. ``send_timeout`` bounds a tell's
    wait for a token; ``ask_timeout`` is the default of asks."""

    def __init__(
        self,
        *,
        client: EtcdClient,
        keys: PlatformKeys,
        holder: str,
        lease: LeaseKeeper,
        own_lease: bool,
        dead_letters: DeadLetters,
        send_timeout: float,
        ask_timeout: float,
        gates: MutableMapping[str, Gate] | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.holder = holder
        self.dead_letters = dead_letters
        self.send_timeout = send_timeout
        self.ask_timeout = ask_timeout
        self.store = LimitStore(client, keys)
        self.lock = threading.Lock()
        """Guards every gate's state (one lock: the gates are few and their
        critical sections short)."""
        self.gates: dict[str, CapabilityGate] = {}
        self._published = gates if gates is not None else {}  # what the refs read
        self.slot_gates: dict[tuple[str, str], SlotGate] = {}
        """Slot gates by capability and gate id (see `records.gate_id`)."""
        self._lease = lease
        self._own_lease = own_lease
        self._lease_started = False
        self._active: set[QueueGate] = set()
        self._wake = threading.Event()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._sends: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._definitions = PrefixWatch(
            client,
            keys.limits,
            on_reset=self._limits_reset,
            on_event=self._limit_event,
            name="limits",
        )
        self._slots = PrefixWatch(
            client,
            keys.slots,
            on_reset=self._slots_reset,
            on_event=self._slot_event,
            name="limit-slots",
        )
        self._slots_wanted = False
        self._slots_started = False

    # --- lifecycle (caller's thread) -------------------------------------------

    def start(self, *, wait: float) -> Limiter:
        """Read the limits (waiting up to ``wait`` s for etcd) and start."""
        if not self._own_lease:
            self._lease.on_lost(self._lease_lost)
        self._definitions.start(wait=wait)
        for target, name in ((self._run, "taskmesh-limits"), (self._send, "taskmesh-limits-send")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop: waiting senders fail at once; a client's slots are freed."""
        fired: Fired = []
        with self.lock:
            self._stopping = True
            for gate in list(self._active):
                gate._expire(float("inf"), fired)
        run(fired)
        self._wake.set()
        self._sends.put(None)
        for thread in self._threads:
            thread.join(5.0)
        self._definitions.stop()
        if self._slots_started:
            self._slots.stop()
        if self._own_lease and self._lease_started:
            self._lease.stop(revoke=True)

    # --- what gates call (lock held unless said) ----------------------------

    def activate(self, gate: QueueGate, *, urgent: bool = True) -> None:
        """Make the limiter's thread serve ``gate`` now (lock held); not
        ``urgent``: by the time it asked for, if it already minds it."""
        if urgent or gate not in self._active:
            self._active.add(gate)
            self._wake.set()

    def deactivate(self, gate: QueueGate) -> None:
        """``gate`` has nothing to do (lock held); an idle per-key gate is
        dropped."""
        self._active.discard(gate)
        if isinstance(gate, SlotGate) and gate.key is not None and gate.idle():
            if self.slot_gates.get(gate.gate_key) is gate:
                del self.slot_gates[gate.gate_key]
            owner = self.gates.get(gate.capability)
            if owner is not None:
                owner.forget(gate)

    def slot_gate(self, capability: str, key: str | None, slots: int) -> SlotGate:
        """A new slot gate, registered for the watch (lock held)."""
        gate = SlotGate(self, capability, key, slots)
        self.slot_gates[gate.gate_key] = gate
        self.activate(gate)  # served once at least: an unused per-key gate is dropped
        if not self._slots_started:
            self._slots_wanted = True
        return gate

    def defer(self, send: Callable[[], None]) -> None:
        """Run ``send`` on the sending thread (any thread)."""
        self._sends.put(send)

    def lease_id(self) -> int:
        """The lease slots are held under (the limiter's thread); a client's
        is granted on first use. Raises `LeaseLost` without one."""
        if self._own_lease and not self._lease_started:
            self._lease_started = True
            self._lease.on_lost(self._lease_lost)
            self._lease.start()
            self._lease.wait_acquired(5.0)
        return self._lease.require()

    # --- the threads ---------------------------------------------------------

    def _run(self) -> None:
        timeout = _IDLE_WAKE
        while True:
            self._wake.wait(timeout)
            self._wake.clear()
            if self._stopping:
                return
            if self._slots_wanted and not self._slots_started:
                self._slots_started = True
                try:
                    self._slots.start(wait=5.0)
                except Exception:
                    log.warning("limits: no watch on the slots yet", exc_info=True)
            now = time.monotonic()
            with self.lock:
                active = list(self._active)
            wake_at = now + _IDLE_WAKE
            for gate in active:
                try:
                    at = gate.service(now)
                except Exception:
                    log.exception("limits: serving a gate failed")
                    at = now + 0.5
                if at is not None:
                    wake_at = min(wake_at, at)
            timeout = max(0.0, wake_at - time.monotonic())

    def _send(self) -> None:
        while True:
            send = self._sends.get()
            if send is None:
                return
            try:
                send()
            except Exception:
                log.exception("limits: a deferred send failed")

    # --- watches (their own threads) ------------------------------------------

    def _limits_reset(self, kvs: list[KeyValue], revision: int) -> None:
        limits = {limit.capability: limit for limit in map(self._parse, kvs) if limit is not None}
        fired: Fired = []
        with self.lock:
            for capability in [c for c in self.gates if c not in limits]:
                self._remove(capability, fired)
            for limit in limits.values():
                self._set(limit, fired)
        run(fired)

    def _limit_event(self, event: WatchEvent) -> None:
        fired: Fired = []
        capability = PlatformKeys.tail(self.keys.limits, event.kv.key)
        with self.lock:
            if event.kind == "delete":
                if self._remove(capability, fired):
                    log.info("limit on %r removed", capability)
            else:
                limit = self._parse(event.kv)
                if limit is not None:
                    self._set(limit, fired)
                    log.info("limit on %r: %s", capability, limit.describe())
        run(fired)

    def _set(self, limit: Limit, fired: Fired) -> None:
        gate = self.gates.get(limit.capability)
        if gate is None:
            gate = self.gates[limit.capability] = CapabilityGate(self, limit)
            self._published[limit.capability] = gate
        elif gate.limit != limit:
            gate.update(limit, fired)

    def _remove(self, capability: str, fired: Fired) -> bool:
        self._published.pop(capability, None)
        gate = self.gates.pop(capability, None)
        if gate is None:
            return False
        gate.close(fired)
        return True

    def _parse(self, kv: KeyValue) -> Limit | None:
        try:
            return self.store.parse(kv)
        except ConfigError as error:
            log.warning("ignoring an unreadable limit at %s: %s", kv.key, error)
            return None

    def _slots_reset(self, kvs: list[KeyValue], revision: int) -> None:
        with self.lock:
            for gate in self.slot_gates.values():
                gate.wanters.clear()
            for kv in kvs:
                self._slot_change(kv, deleted=False)
            for gate in self.slot_gates.values():
                gate.others_changed()

    def _slot_event(self, event: WatchEvent) -> None:
        with self.lock:
            self._slot_change(event.kv, deleted=event.kind == "delete")

    def _slot_change(self, kv: KeyValue, *, deleted: bool) -> None:
        """One slot record changed (lock held)."""
        parts = PlatformKeys.tail(self.keys.slots, kv.key).split("/")
        if len(parts) != 4 or parts[3] == self.holder:
            return
        capability, gate_id, kind, holder = parts
        gate = self.slot_gates.get((capability, gate_id))
        if gate is None:
            return
        if kind == "w":
            if deleted:
                gate.wanters.discard(holder)
            else:
                gate.wanters.add(holder)
                if gate.held > gate.in_use:
                    self.activate(gate)
        elif kind == "h":
            gate.others_changed()

    def _lease_lost(self, lease: int) -> None:
        """The lease thread: our slot records went with the lease."""
        with self.lock:
            for gate in self.slot_gates.values():
                gate.lease_lost()
                if gate.tickets:
                    self.activate(gate)


def client_limiter(
    view: ClusterMember, locator: Locator, *, send_timeout: float, ask_timeout: float
) -> Limiter:
    """The limiter of a client (an observer: its slots go under a lease of
    its own, granted when it first needs one)."""
    settings = view.settings
    return Limiter(
        client=view.client,
        keys=PlatformKeys(settings.cluster),
        holder=view.node,
        lease=LeaseKeeper(view.client, settings.lease_ttl),
        own_lease=True,
        dead_letters=locator.dead_letters,
        send_timeout=send_timeout,
        ask_timeout=ask_timeout,
        gates=locator.limits,
    )
