"""`ShardHost`: one entity type on one node: its shards, activations and handoffs.

Each shard of the type is in one of four states here::

    NOT_MINE --assigned to us (watch)--> ACQUIRING --store fenced--> SERVING
       ^                                                                |
       |        handoff asked (watch) or drain: entities passivate      v
       +--- key deleted, buffer handed on <---------------------- RELEASING

While ACQUIRING or RELEASING, messages for the shard wait in its buffer, in
arrival order; NOT_MINE hands them to the router (forwarded to the owner
the map shows, or held until there is one).

**Never two live activations of one id.** An activation handles a message
only while (1) its shard's assignment key names this node under its
current lease, and (2) this node's clock is before its lease's local
deadline (the send time of the last accepted keep-alive plus the TTL),
checked for every message, right before it runs. The leader assigns a
shard only when its key is absent: after the owner deleted it itself (a
handoff: its entities have passivated first) or after etcd expired the
owner's lease, and then only ``margin`` seconds after it saw the key go.
etcd cannot expire a lease before its holder's local deadline, so by then
the old owner has stopped handling messages, even if it is frozen or cut
off and has not noticed yet; its saves are refused by the store's fence.

Threads: ``deliver`` runs on the transport's I/O thread (never blocks) or a
sender's thread; map changes arrive on the watch thread; acquiring and
releasing run on the node's entity jobs thread; activations on the event
loop. ``lock`` guards the slots; it is held only for dictionary work and
mailbox puts.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from taskmesh.actors.cell import RUNNING
from taskmesh.actors.directives import Action, Directive
from taskmesh.actors.future import ReplyTo
from taskmesh.actors.mailbox import STOP
from taskmesh.actors.supervisor import Child
from taskmesh.cluster.etcd import Compare, Delete, Put
from taskmesh.entities.cell import EntityCell, EntitySupervisor
from taskmesh.entities.entity import Entity
from taskmesh.entities.layout import Handoff, HostRecord
from taskmesh.entities.shards import shard_of
from taskmesh.entities.store import StateStore, decode_state
from taskmesh.errors import ActorNotFound, ClusterError, MailboxFull, StaleActivation

if TYPE_CHECKING:
    from taskmesh.entities.service import Entities

__all__ = ["ACQUIRING", "NOT_MINE", "RELEASING", "SERVING", "Item", "ShardHost"]

log = logging.getLogger("taskmesh.entities")

_monotonic = time.monotonic

NOT_MINE, ACQUIRING, SERVING, RELEASING = 0, 1, 2, 3
STATE_NAMES = ("not_mine", "acquiring", "serving", "releasing")

Item = tuple[str, Any, ReplyTo | None, float | None, str | None, float]
"""A message on its way: ``(entity id, message, reply, deadline, idempotency
key, since)``; an empty id is a barrier (answered once everything before it
is in place)."""

BUFFER_LIMIT = 10_000
"""Messages one shard buffers while it moves; more are refused (dead letters)."""


class _Slot:
    """One shard here (host lock)."""

    __slots__ = ("buffer", "cells", "index", "state", "target", "token")

    def __init__(self, index: int) -> None:
        self.index = index
        self.state = NOT_MINE
        self.token = 0
        self.cells: dict[str, EntityCell] = {}
        self.buffer: list[Item] = []
        self.target = ""


class ShardHost:
    """Hosts ``entity_cls`` on a node; made by ``node.host``. See the module doc."""

    def __init__(
        self,
        entities: Entities,
        entity_cls: type[Entity],
        store: StateStore | None,
        *,
        handoff_timeout: float = 10.0,
    ) -> None:
        system = entities.system
        self.entities = entities
        self.entity_cls = entity_cls
        self.entity_type = entity_cls.entity_type
        self.shards = entity_cls.shards
        self.idle_timeout = entity_cls.idle_timeout
        self.store = store if entity_cls.persistent else None
        self.system = system
        self.loop = system._loop  # the system's event loop runs every activation
        self.spec = Child(entity_cls, restart="transient", shutdown_timeout=handoff_timeout)
        self.supervisor = EntitySupervisor(self)
        self.mailbox_size = system.mailbox_size
        self.max_attempts = system.max_attempts
        self.async_receive = inspect.iscoroutinefunction(entity_cls.receive)
        hooks = (entity_cls.on_activate, entity_cls.on_passivate, entity_cls.on_restart)
        self.sync_life = (
            entity_cls.max_concurrency == 1
            and self.store is None
            and not any(inspect.iscoroutinefunction(hook) for hook in hooks)
        )
        self.handoff_timeout = handoff_timeout
        self.slots = [_Slot(i) for i in range(self.shards)]
        self.cells: dict[str, EntityCell] = {}
        """Every activation here by id (host lock to change; read anywhere)."""
        self.lock = threading.Lock()
        self._map_lock = threading.RLock()
        self.serve_until = 0.0
        """Local deadline of the lease the shards are held under (monotonic)."""
        self.lease = 0
        self.draining = False
        self.closing = False
        self.activations = 0
        self.passivations = 0
        self.handoffs = 0
        self.restarts = 0
        self.last_handoff = 0.0

    def __repr__(self) -> str:
        return f"<ShardHost {self.entity_type!r}>"

    # --- figures (any thread) ---------------------------------------------------

    def active(self) -> int:
        return len(self.cells)

    def buffered(self) -> int:
        return sum(len(slot.buffer) for slot in self.slots)

    def owned(self) -> list[int]:
        return [slot.index for slot in self.slots if slot.state == SERVING]

    def stats(self) -> dict[str, Any]:
        states = [STATE_NAMES[slot.state] for slot in self.slots]
        return {
            "active": self.active(),
            "shards": states.count("serving"),
            "moving": states.count("acquiring") + states.count("releasing"),
            "buffered": self.buffered(),
            "activations": self.activations,
            "passivations": self.passivations,
            "handoffs": self.handoffs,
            "restarts": self.restarts,
            "draining": self.draining,
        }

    # --- messages (I/O thread or a sender's thread) ---------------------------------

    def deliver_active(
        self, entity_id: str, message: Any, reply: ReplyTo | None, deadline: float | None
    ) -> bool:
        """The common case of a message from another node, without a lock:
        the entity is active and its shard served here, and its mailbox has
        room. False (nothing done) when it is not that simple (I/O thread).

        Safe against a concurrent passivation, handoff or loss: a message
        put into a mailbox whose activation then ends is handed on with
        the rest of that mailbox (:meth:`on_ended`), and one put after it
        ended is taken back at once (:meth:`_rescue`).
        """
        cell = self.cells.get(entity_id)
        if cell is None or cell.passivating:
            return False
        if self.slots[cell.shard].state != SERVING or _monotonic() >= self.serve_until:
            return False
        mailbox = cell.mailbox
        if mailbox.qsize() >= mailbox.capacity:
            return False
        cell.touched = True
        mailbox.put((0, message, reply, deadline))
        if not cell.alive:
            self._rescue(cell)
        return True

    def _rescue(self, cell: EntityCell) -> None:
        """Take back what was put into an activation that ended meanwhile."""
        with self.lock:
            if self.cells.get(cell.entity_id) is cell:
                return  # not ended yet: on_ended hands the mailbox on
            leftovers = cell.leftovers()
        if leftovers:
            self.entities.router.pass_on(self.entity_type, cell.shard, leftovers)

    def deliver(
        self,
        token: int,
        entity_id: str,
        message: Any,
        reply: ReplyTo | None,
        deadline: float | None,
        key: str | None,
        *,
        block: bool,
    ) -> EntityCell | None:
        """Hand one message to its entity, activating it if needed, or buffer
        or pass it on. Returns the entity whose full mailbox a blocking
        sender must wait for (then send again); else None."""
        shard = shard_of(entity_id, self.shards)
        if token > self.entities.map.revision:
            item: Item = (entity_id, message, reply, deadline, key, 0.0)
            self.entities.router.hold(self.entity_type, shard, [item], token)
            return None
        slot = self.slots[shard]
        with self.lock:
            state = slot.state
            if state == SERVING and _monotonic() < self.serve_until:
                return self._put(slot, (entity_id, message, reply, deadline, key, 0.0), block=block)
            if state in (ACQUIRING, RELEASING):
                self._buffer(slot, (entity_id, message, reply, deadline, key, 0.0))
                return None
        self.entities.router.pass_on(
            self.entity_type, shard, [(entity_id, message, reply, deadline, key, 0.0)]
        )
        return None

    def barrier(self, token: int, shard: int, reply: ReplyTo) -> None:
        """A barrier for ``shard``: answered once every message that came
        before it is in an entity's mailbox (I/O thread)."""
        item: Item = ("", None, reply, None, None, 0.0)
        if shard >= self.shards:
            reply.fail(ActorNotFound(f"{self.entity_type!r} has no shard {shard}"))
            return
        if token > self.entities.map.revision:
            self.entities.router.hold(self.entity_type, shard, [item], token)
            return
        slot = self.slots[shard]
        with self.lock:
            state = slot.state
            if state == SERVING and _monotonic() < self.serve_until:
                answer = True
            elif state in (ACQUIRING, RELEASING):
                self._buffer(slot, item)
                return
            else:
                answer = False
        if answer:
            reply.set(True)
        else:
            self.entities.router.pass_on(self.entity_type, shard, [item])

    def _put(self, slot: _Slot, item: Item, *, block: bool) -> EntityCell | None:
        """Queue ``item`` at its entity (host lock held, shard SERVING)."""
        entity_id, message, reply, deadline, key, _ = item
        if not entity_id:
            if reply is not None:
                reply.set(True)  # a barrier: everything before it is queued
            return None
        cell = slot.cells.get(entity_id)
        if cell is None:
            cell = self._activate(slot, entity_id)
        elif cell.passivating or not cell.alive:
            if cell.after is None:
                cell.after = []
            cell.after.append(item)
            return None
        mailbox = cell.mailbox
        if mailbox.qsize() >= mailbox.capacity:
            if block:
                return cell
            if reply is not None:
                reply.fail(MailboxFull(f"mailbox of entity {cell.name!r} is full"))
            else:
                self.system.dead_letters.record(cell.name, message, "mailbox_full")
            return None
        if key is not None and reply is not None:
            reply = self.system.idempotency.admit(cell.name, key, reply)
            if reply is None:
                return None  # a repeat: answered from memory, or waits for the first
        cell.touched = True
        mailbox.put((0, message, reply, deadline))
        return None

    def _buffer(self, slot: _Slot, item: Item) -> None:
        if len(slot.buffer) >= BUFFER_LIMIT:
            self.entities.refuse(self.entity_type, item, "buffer_full")
            return
        entity_id, message, reply, deadline, key, _ = item
        slot.buffer.append((entity_id, message, reply, deadline, key, _monotonic()))

    def _activate(self, slot: _Slot, entity_id: str) -> EntityCell:
        cell = EntityCell(self, entity_id, slot.index, slot.token)
        slot.cells[entity_id] = cell
        self.cells[entity_id] = cell
        self.activations += 1
        cell.start()
        return cell

    # --- activations (the event loop) ---------------------------------------------

    def on_activated(self, cell: EntityCell) -> None:
        """An activation is about to run ``on_activate`` (for tests' records)."""
        observer = self.entities.observer
        if observer is not None:
            observer("activate", self.entity_type, cell.entity_id, cell.token)

    async def load(self, entity_id: str) -> Any:
        """The entity's stored state, read on a store worker thread."""
        store = self.store
        assert store is not None
        data = await asyncio.get_running_loop().run_in_executor(
            self.entities.executor, store.load, self.entity_type, entity_id
        )
        return decode_state(data)

    async def write(self, cell: EntityCell, data: bytes | None) -> None:
        """Store one activation's state, fenced by its token (store thread)."""
        store = self.store
        assert store is not None
        if _monotonic() >= self.serve_until:
            raise StaleActivation(f"not saved: {cell.name!r}'s node may have lost its lease")
        await asyncio.get_running_loop().run_in_executor(
            self.entities.executor,
            store.save,
            self.entity_type,
            cell.shard,
            cell.entity_id,
            data,
            cell.token,
        )

    def on_ended(self, cell: EntityCell) -> None:
        """An activation ended: hand on what was left in its mailbox."""
        observer = self.entities.observer
        if observer is not None:
            observer("passivate", self.entity_type, cell.entity_id, cell.token)
        release = False
        with self.lock:
            slot = self.slots[cell.shard]
            if slot.cells.get(cell.entity_id) is cell:
                del slot.cells[cell.entity_id]
            if self.cells.get(cell.entity_id) is cell:
                del self.cells[cell.entity_id]
            self.passivations += 1
            leftovers = cell.leftovers() + (cell.after or [])
            cell.after = None
            if slot.state == SERVING and leftovers and not cell.lost:
                for item in leftovers:
                    self._put(slot, item, block=False)
                leftovers = []
            elif slot.state == RELEASING:
                slot.buffer[:0] = leftovers
                leftovers = []
                release = not slot.cells
        if leftovers:
            if self.closing:
                for item in leftovers:
                    self.entities.refuse(self.entity_type, item, "actor_stopped")
            else:
                self.entities.router.pass_on(self.entity_type, cell.shard, leftovers)
        if release:
            self.entities.jobs.submit(self._released, cell.shard)

    def sweep(self) -> None:
        """Passivate entities idle for ``idle_timeout`` (the event loop,
        every quarter of it); timers do not count as activity."""
        timeout = self.idle_timeout
        if timeout is None or self.closing:
            return
        now = _monotonic()
        idle: list[EntityCell] = []
        for slot in self.slots:
            if not slot.cells:
                continue
            with self.lock:
                if slot.state != SERVING:
                    continue
                for cell in slot.cells.values():
                    if cell.passivating:
                        continue
                    if cell.touched or cell._task is not None or cell.mailbox.qsize():
                        cell.touched = False
                        cell.idle_since = now
                    elif now - cell.idle_since >= timeout:
                        cell.passivating = True
                        idle.append(cell)
        for cell in idle:
            cell.post(Directive(Action.STOP, terminated_reason="passivated"))

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

    def _drop(self, slot: _Slot, why: str) -> None:
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

    def record(self, draining: bool = False) -> HostRecord:
        entities = self.entities
        return HostRecord(
            node=entities.node_id,
            address=entities.address,
            public_key=entities.public_key,
            shards=self.shards,
            draining=draining,
            lease=self.lease,
        )
