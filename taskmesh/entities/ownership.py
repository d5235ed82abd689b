"""Shard ownership: the half of a `ShardHost` that takes and gives up shards.

Each shard of a hosted type is in one of four states on a node::

    NOT_MINE --assigned to us (watch)--> ACQUIRING --store fenced--> SERVING
       ^                                                                |
       |        handoff asked (watch) or drain: entities passivate      v
       +--- key deleted, buffer handed on <---------------------- RELEASING

While ACQUIRING or RELEASING, messages for the shard wait in its buffer, in
arrival order; NOT_MINE hands them to the router (forwarded to the owner
the map shows, or held until there is one).

**Never two live activations of one id.** An activation runs user code
only while (1) its shard's assignment key names this node under its
current lease, and (2) this node's clock is before its lease's local
deadline (the send time of the last accepted keep-alive plus the TTL),
checked right before every message and hook. The leader assigns a shard
only when its key is absent: after the owner deleted it itself (a handoff:
its entities have passivated first) or after etcd expired the owner's
lease, and then only ``margin`` seconds after it saw the key go. etcd
cannot expire a lease before its holder's local deadline, so by then the
old owner has stopped running user code, even if it is frozen or cut off
and has not noticed yet; its saves are refused by the store's fence.

Threads: map changes arrive on the watch thread (``on_map``, one pass at a
time); fencing the store and handing over run on the node's entity jobs
thread; lease changes on the lease thread. ``lock`` guards the slots.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from taskmesh.actors.cell import RUNNING
from taskmesh.actors.directives import Action, Directive
from taskmesh.actors.future import ReplyTo
from taskmesh.actors.mailbox import STOP
from taskmesh.cluster.etcd import Compare, Delete, Put
from taskmesh.entities.layout import Handoff
from taskmesh.errors import ClusterError, StaleActivation

if TYPE_CHECKING:
    from taskmesh.entities.cell import EntityCell
    from taskmesh.entities.service import Entities
    from taskmesh.entities.store import StateStore

__all__ = [
    "ACQUIRING",
    "NOT_MINE",
    "RELEASING",
    "SERVING",
    "STATE_NAMES",
    "Item",
    "ShardOwnership",
    "Slot",
]

log = logging.getLogger("taskmesh.entities")

_monotonic = time.monotonic

NOT_MINE, ACQUIRING, SERVING, RELEASING = 0, 1, 2, 3
STATE_NAMES = ("not_mine", "acquiring", "serving", "releasing")

Item = tuple[str, Any, ReplyTo | None, float | None, str | None, float]
"""A message on its way: ``(entity id, message, reply, deadline, idempotency
key, since)``; an empty id is a barrier (answered once everything before it
is in place)."""


class Slot:
    """One shard on this node (host lock)."""

    __slots__ = ("buffer", "cells", "index", "state", "target", "token")

    def __init__(self, index: int) -> None:
        self.index = index
        self.state = NOT_MINE
        self.token = 0
        self.cells: dict[str, EntityCell] = {}
        self.buffer: list[Item] = []
        self.target = ""


class ShardOwnership:
    """The ownership half of :class:`~taskmesh.entities.host.ShardHost` (its
    base); see the module docstring. The fields are set by ``ShardHost``."""

    entities: Entities
    entity_type: str
    store: StateStore | None
    slots: list[Slot]
    lock: threading.Lock
    _map_lock: threading.RLock
    serve_until: float
    lease: int
    draining: bool
    closing: bool
    handoff_timeout: float
    handoffs: int
    last_handoff: float

    def _put(self, slot: Slot, item: Item, *, block: bool) -> EntityCell | None:
        raise NotImplementedError

    # --- ownership (the watch thread and the jobs thread) --------------------------

    def on_map(self) -> None:
        """The shard map changed: take, give up or hand over shards (watch
        thread, or the lease thread for a new lease; one at a time)."""
        with self._map_lock:
            self._on_map()

    def _on_map(self) -> None:
        view = self.entities.map.view(self.entity_type)
        if view is None or self.closing:
            return
        me = self.entities.node_id
        lease = self.lease
        for slot in self.slots:
            owner = view.owner(slot.index)
            # The lease deadline is checked per message; a lost lease drops all.
            mine = owner is not None and owner.node == me and owner.lease == lease and lease != 0
            state = slot.state
            if mine and state == NOT_MINE:
                assert owner is not None
                with self.lock:
                    slot.state = ACQUIRING
                    slot.token = owner.token
                self.entities.jobs.submit(self._acquire, slot.index, owner.token)
            elif mine and owner is not None and owner.token != slot.token and state != RELEASING:
                self._drop(slot, "its assignment changed")  # re-assigned: start over
                self._on_map()
                return
            elif not mine and state in (SERVING, ACQUIRING):
                self._drop(slot, "its assignment is gone")
            handoff = view.handoffs.get(slot.index)
            if (
                handoff is not None
                and not handoff.released
                and handoff.source == me
                and slot.state == SERVING
                and mine
            ):
                self.release(slot.index, handoff.target)

    def _acquire(self, shard: int, token: int) -> None:
        """Fence the shard in the store, then serve it (jobs thread)."""
        slot = self.slots[shard]
        if slot.state != ACQUIRING or slot.token != token:
            return
        if self.store is not None:
            try:
                self.store.acquire(self.entity_type, shard, token)
            except StaleActivation as error:
                log.error("cannot take shard %d of %r: %s", shard, self.entity_type, error)
                self._drop(slot, "the store holds a newer owner")
                return
            except Exception as error:
                log.warning(
                    "fencing shard %d of %r failed, retrying: %r", shard, self.entity_type, error
                )
                self.entities.jobs.submit(self._acquire, shard, token, delay=0.5)
                return
        with self.lock:
            if slot.state != ACQUIRING or slot.token != token:
                return
            slot.state = SERVING
            items, slot.buffer = slot.buffer, []
            for item in items:
                self._put(slot, item, block=False)
        self.entities.router.wake(self.entity_type, shard)
        view = self.entities.map.view(self.entity_type)
        handoff = view.handoffs.get(shard) if view is not None else None
        if self.draining:
            self.release(shard)
        elif (
            handoff is not None and not handoff.released and handoff.source == self.entities.node_id
        ):
            self.release(shard, handoff.target)

    def release(self, shard: int, target: str = "") -> None:
        """Hand ``shard`` over: its entities handle what they have queued and
        passivate; then the assignment key is deleted (any thread)."""
        slot = self.slots[shard]
        with self.lock:
            if slot.state != SERVING:
                return
            slot.state = RELEASING
            slot.target = target
            cells = [cell for cell in slot.cells.values() if not cell.passivating]
            for cell in cells:
                cell.passivating = True
            empty = not slot.cells
        for cell in cells:
            if cell._state is RUNNING:
                cell.mailbox.put((STOP, None, None, None))  # after what is queued
            else:  # waiting to restart after a failure: stop it now, keep its mailbox
                cell.post(Directive(Action.STOP, terminated_reason="handed over"))
        if empty:
            self.entities.jobs.submit(self._released, shard)
        else:
            self.entities.jobs.submit(self._force, shard, slot.token, delay=self.handoff_timeout)

    def _force(self, shard: int, token: int) -> None:
        """A handoff that did not finish in time: stop what is left (jobs thread)."""
        slot = self.slots[shard]
        with self.lock:
            if slot.state != RELEASING or slot.token != token:
                return
            cells = list(slot.cells.values())
        log.warning(
            "handing over shard %d of %r: %d entities did not passivate within %.0f s; stopping them",
            shard, self.entity_type, len(cells), self.handoff_timeout,
        )  # fmt: skip
        for cell in cells:
            cell.post(Directive(Action.STOP, terminated_reason="handed over"))
            cell.interrupt()  # a receive stuck in an await would keep the shard here

    def _released(self, shard: int) -> None:
        """Every entity of a RELEASING shard has passivated: give the shard
        back (jobs thread); the buffer goes on to the next owner."""
        slot = self.slots[shard]
        with self.lock:
            if slot.state != RELEASING or slot.cells:
                return
            token, target = slot.token, slot.target
        entities = self.entities
        keys = entities.keys
        key = keys.shard(self.entity_type, shard)
        marker = Handoff(shard, entities.node_id, target, released=True)
        try:
            entities.etcd.txn(
                [Compare(key, "mod", "==", token)],
                [Delete(key), Put(keys.handoff(self.entity_type, shard), marker.to_bytes())],
            )
        except ClusterError as error:
            if _monotonic() < self.serve_until:
                log.info(
                    "handing over shard %d of %r failed, retrying: %s",
                    shard,
                    self.entity_type,
                    error,
                )
                entities.jobs.submit(self._released, shard, delay=0.25)
                return
        with self.lock:
            if slot.state != RELEASING:
                return
            slot.state = NOT_MINE
            items, slot.buffer = slot.buffer, []
            self.handoffs += 1
            self.last_handoff = time.time()
        if items:
            entities.router.hold(self.entity_type, shard, items, entities.map.revision + 1)
        self.on_map()  # the leader may have given it back to us meanwhile

    def _drop(self, slot: Slot, why: str) -> None:
        """Give up a shard at once (its key is gone, or the lease): its
        activations end without on_passivate; what they had queued and the
        buffer go on to the next owner."""
        with self.lock:
            if slot.state == NOT_MINE:
                return
            was = slot.state
            slot.state = NOT_MINE
            cells = list(slot.cells.values())
            for cell in cells:
                cell.lost = True
                cell.passivating = True
            items, slot.buffer = slot.buffer, []
        if was != ACQUIRING:
            log.warning("shard %d of %r lost here: %s", slot.index, self.entity_type, why)
        for cell in cells:
            cell.post(Directive(Action.STOP, terminated_reason="lost"))
        if items:
            self.entities.router.hold(
                self.entity_type, slot.index, items, self.entities.map.revision + 1
            )

    # --- the lease (the lease thread) --------------------------------------------

    def on_lease(self, lease: int, deadline: float) -> None:
        """A lease was granted or renewed: shards are served under it until ``deadline``."""
        if lease != self.lease:
            self.lease = lease
            self.serve_until = deadline
            self.on_map()
        else:
            self.serve_until = deadline

    def on_lease_lost(self) -> None:
        """Stop serving at once; another node may take the shards."""
        self.serve_until = 0.0
        for slot in self.slots:
            if slot.state != NOT_MINE:
                self._drop(slot, "this node lost its etcd lease")
