"""A limit's concurrency: slots held in etcd under each holder's lease.

A gate (the capability's own, or one ``key=`` of a per-key limit) keeps
its keys under ``limit-slots/<capability>/<gate>/``:

- ``h/<holder>`` = ``{n}``: the slots one process (a node or a client)
  holds, under that process's lease: when the process dies, its slots
  come back as the lease expires;
- ``v``: a version, rewritten by every transaction that adds slots and
  guarding it, so two processes cannot both take the last free slot;
- ``w/<holder>``: a process that waits for a slot (under its lease), so
  that holders give back the ones they do not use at once.

A process takes slots in batches (for the senders waiting) and hands them
to its senders locally: an answered ask passes its slot to the next local
sender without etcd, unless another process waits, in which case it goes
back to etcd. Idle slots go back after `LINGER`. A sender that finds every
slot taken is woken by the watch on ``limit-slots/`` when a holder gives
some back (and re-checks every `RECHECK` in any case).

Giving slots back needs no guard: a reader that saw more slots held than
there are only waits a little longer.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from taskmesh.cluster.etcd import Compare, Put
from taskmesh.errors import ClusterError

from .admission import Callback, Fired, Grant, QueueGate, run
from .records import decode, encode, gate_id

if TYPE_CHECKING:
    from .limiter import Limiter

__all__ = ["LINGER", "RECHECK", "SlotGate"]

log = logging.getLogger("taskmesh.limits")

_monotonic = time.monotonic

LINGER = 1.0
"""Seconds an idle slot stays with its holder (no other process waiting)."""
RECHECK = 1.0
"""Seconds between re-reads of a full gate, beside the watch's wake-ups."""
_RETRY_AFTER_ERROR = 0.25


class SlotGate(QueueGate):
    """This process's slots of one concurrency gate.

    ``acquire`` and ``release`` run in any thread; ``service`` and the etcd
    calls on the limiter's thread only. ``key`` is the per-key limit's key,
    or None for the capability's own gate.
    """

    def __init__(self, limiter: Limiter, capability: str, key: str | None, slots: int) -> None:
        super().__init__(limiter)
        self.capability = capability
        self.key = key
        self.slots = slots
        self.prefix = limiter.keys.slot_gate(capability, key)
        self.gate_key = (capability, gate_id(key))
        self.error = ""
        self.held = 0  # slots our record in etcd holds, under `_lease`
        self.in_use = 0
        self.wanters: set[str] = set()  # other processes waiting (the watch)
        self.closed = False
        self._lease: int | None = None
        self._wanting = False  # our own `w/` key is written
        self._idle_since = _monotonic()
        self._recheck_at = 0.0

    def acquire(self, deadline: float, callback: Callback | None) -> Grant | None:
        """A slot now, or None; with ``callback``, queue a ticket that is
        called with a slot, or with None at ``deadline`` (lock held: the
        gate's owner finds or makes the gate under the same lock)."""
        if self.closed or (self.in_use < self.held and not self.tickets and not self.wanters):
            return self._take()
        if callback is not None:
            self._queue(deadline, callback)
        return None

    def release(self, grant: Grant) -> None:
        """An ask ended: pass its slot to the next local sender, or keep it
        idle for the limiter's thread to give back (any thread)."""
        fired: Fired = []
        with self.lock:
            if grant.released:
                return
            grant.released = True
            self.in_use -= 1
            if self.closed:
                return
            if self.tickets and not self.wanters and self.in_use < self.held:
                fired.append((self.tickets.popleft().callback, self._take()))
            elif self.in_use < self.held:
                if self.in_use == 0:
                    self._idle_since = _monotonic()
                # another process waits: give it back now; else at the linger's end
                # (no wake-up per message while the limiter already minds this gate)
                self.limiter.activate(self, urgent=bool(self.wanters))
        run(fired)

    def _take(self) -> Grant:
        self.in_use += 1
        return Grant(self)

    def update(self, slots: int) -> None:
        """The limit was changed (lock held)."""
        self.slots = slots
        self._recheck_at = 0.0
        self.limiter.activate(self)

    def close(self, fired: Fired) -> None:
        """The limit is gone: let the waiting senders through (lock held)."""
        self.closed = True
        self.open_all(fired)

    def lease_lost(self) -> None:
        """Our lease expired, and our slot records with it (lock held)."""
        self.held = 0
        self._lease = None
        self._wanting = False
        self._recheck_at = 0.0

    def others_changed(self) -> None:
        """The watch saw another holder's slots change (lock held)."""
        self._recheck_at = 0.0
        if self.tickets:
            self.limiter.activate(self)

    # --- the limiter's thread -------------------------------------------------

    def service(self, now: float) -> float | None:
        fired: Fired = []
        try:
            with self.lock:
                next_deadline = self._expire(now, fired)
                if self.closed:
                    self.limiter.deactivate(self)
                    return None
                if self.held > self.in_use and self.wanters:
                    action = "shrink"  # another process waits: back to etcd, and compete
                    self.held = self.in_use  # from now on, local senders cannot use them
                elif self.tickets:
                    while self.tickets and self.in_use < self.held:
                        fired.append((self.tickets.popleft().callback, self._take()))
                    if not self.tickets:
                        return now
                    if now < self._recheck_at:
                        return min(self._recheck_at, next_deadline)
                    action = "grow"
                elif self.held > self.in_use and now - self._idle_since >= LINGER:
                    action = "shrink"
                    self.held = self.in_use
                elif self._wanting:
                    action = "unmark"
                elif self.held > self.in_use:
                    return self._idle_since + LINGER
                elif self.held:  # all in use: stay minded, so releases need no wake-up
                    return now + LINGER
                else:
                    self.limiter.deactivate(self)
                    return None
            try:
                if action == "grow":
                    self._grow(fired)
                elif action == "shrink":
                    self._write_held()
                else:
                    self._unmark()
                self.error = ""
            except ClusterError as error:
                if not self.error:
                    log.warning("limit %r: slots in etcd: %s", self.capability, error)
                self.error = str(error)
                with self.lock:
                    self._recheck_at = _monotonic() + _RETRY_AFTER_ERROR
                return _monotonic() + _RETRY_AFTER_ERROR
            return _monotonic() if action != "grow" else min(self._recheck_at, next_deadline)
        finally:
            run(fired)

    def _grow(self, fired: Fired) -> None:
        """Take slots for the waiting senders, if any are free in etcd."""
        limiter = self.limiter
        lease = limiter.lease_id()
        kvs, _ = limiter.client.get_prefix(self.prefix)
        version = None
        others = 0
        me = limiter.holder
        for kv in kvs:
            tail = kv.key[len(self.prefix) :]
            if tail == "v":
                version = kv
            elif tail.startswith("h/") and tail[2:] != me:
                others += int(decode(kv.value).get("n", 0))
        with self.lock:
            held = self.held if self._lease == lease else 0
            base = max(held, self.in_use)  # after a lost lease, what is in use counts
            need = len(self.tickets) - (held - self.in_use if held > self.in_use else 0)
            free = self.slots - others - base
        if need <= 0:
            return
        if free <= 0:
            if not self._wanting:
                limiter.client.put(self.prefix + "w/" + me, b"", lease=lease)
                self._wanting = True
            with self.lock:
                self._recheck_at = _monotonic() + RECHECK
            return
        held_now = base + min(need, free)
        guard = (
            Compare(self.prefix + "v", "mod", "==", version.mod_revision)
            if version is not None
            else Compare(self.prefix + "v", "create", "==", 0)
        )
        result = limiter.client.txn(
            [guard],
            [
                Put(self.prefix + "h/" + me, encode({"n": held_now}), lease),
                Put(self.prefix + "v", b""),
            ],
        )
        with self.lock:
            if result.succeeded:
                self.held, self._lease = held_now, lease
                while self.tickets and self.in_use < self.held:
                    fired.append((self.tickets.popleft().callback, self._take()))
            self._recheck_at = 0.0  # lost a race: read again at once

    def _write_held(self) -> None:
        """Give idle slots back: write what is held now (no guard needed)."""
        limiter = self.limiter
        with self.lock:
            held, lease = self.held, self._lease
        key = self.prefix + "h/" + limiter.holder
        if held == 0 or lease is None:
            limiter.client.delete(key)
            with self.lock:
                if self.held == 0:
                    self._lease = None
        else:
            limiter.client.put(key, encode({"n": held}), lease=lease)

    def _unmark(self) -> None:
        self.limiter.client.delete(self.prefix + "w/" + self.limiter.holder)
        self._wanting = False

    def idle(self) -> bool:
        """Nothing held, used, waited for or marked (lock held)."""
        return not (self.held or self.in_use or self.tickets or self._wanting)
