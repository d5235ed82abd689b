"""`ShardHost`: one entity type on one node: its activations and their messages.

It delivers messages to the type's entities (activating them on first
message), buffers them while their shard moves, passivates idle entities,
and hands on what an ending activation leaves in its mailbox. How it takes
and gives up shards, and why no id is ever active twice, is its base,
:class:`~taskmesh.entities.ownership.ShardOwnership`.

Threads: ``deliver`` runs on the transport's I/O thread (never blocks) or a
sender's thread; activations and the idle sweep on the event loop. ``lock``
guards the slots; it is held only for dictionary work and mailbox puts.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from taskmesh.actors.directives import Action, Directive
from taskmesh.actors.future import ReplyTo
from taskmesh.actors.mailbox import TRACED, USER
from taskmesh.actors.supervisor import Child
from taskmesh.actors.traced import Traced, untraced
from taskmesh.entities.cell import EntityCell, EntitySupervisor
from taskmesh.entities.entity import Entity
from taskmesh.entities.layout import HostRecord
from taskmesh.entities.ownership import (
    ACQUIRING,
    RELEASING,
    SERVING,
    STATE_NAMES,
    Item,
    ShardOwnership,
    Slot,
)
from taskmesh.entities.shards import shard_of
from taskmesh.entities.store import StateStore, decode_state
from taskmesh.errors import ActorNotFound, MailboxFull, StaleActivation

if TYPE_CHECKING:
    from taskmesh.entities.service import Entities

__all__ = ["ShardHost"]

log = logging.getLogger("taskmesh.entities")

_monotonic = time.monotonic

BUFFER_LIMIT = 10_000
"""Messages one shard buffers while it moves; more are refused (dead letters)."""


class ShardHost(ShardOwnership):
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
        self.slots = [Slot(i) for i in range(self.shards)]
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
        self,
        entity_id: str,
        message: Any,
        reply: ReplyTo | None,
        deadline: float | None,
        kind: int = USER,
    ) -> bool | None:
        """The common case of a message from another node, without a lock:
        the entity is active and its shard served here, and its mailbox has
        room. None (nothing done) when all holds but the mailbox is full
        (the transport keeps the message); False when it is not that simple
        (I/O thread). ``kind`` is ``TRACED`` for a :class:`Traced` message.

        Safe against a concurrent passivation, handoff or loss: a message
        put into a mailbox whose activation then ends is handed on with
        the rest of that mailbox (:meth:`on_ended`), and one put after it
        ended is taken back at once (:meth:`_rescue`).
        """
        cell = self._served(entity_id)
        if cell is None:
            return False
        mailbox = cell.mailbox
        if mailbox.qsize() >= mailbox.capacity:
            return None
        cell.touched = True
        mailbox.put((kind, message, reply, deadline))
        if not cell.alive:
            self._rescue(cell)
        return True

    def full(self, entity_id: str) -> bool:
        """Whether ``entity_id`` is active and served here and its mailbox
        is full: what :meth:`deliver_active` says with None (I/O thread)."""
        cell = self._served(entity_id)
        return cell is not None and cell.mailbox.qsize() >= cell.mailbox.capacity

    def _served(self, entity_id: str) -> EntityCell | None:
        """The activation of ``entity_id`` if it takes messages here now:
        not passivating, its shard served, the lease not past its deadline."""
        cell = self.cells.get(entity_id)
        if cell is None or cell.passivating:
            return None
        if self.slots[cell.shard].state != SERVING or _monotonic() >= self.serve_until:
            return None
        return cell

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
            item: Item = (entity_id, untraced(message), reply, deadline, key, 0.0)
            self.entities.router.hold(self.entity_type, shard, [item], token)
            return None
        slot = self.slots[shard]
        with self.lock:
            state = slot.state
            if state == SERVING and _monotonic() < self.serve_until:
                return self._put(slot, (entity_id, message, reply, deadline, key, 0.0), block=block)
            # Buffered or handed on: a trace context (a Traced message from
            # another node) is kept only for an entity served here now.
            message = untraced(message)
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

    def _put(self, slot: Slot, item: Item, *, block: bool) -> EntityCell | None:
        """Queue ``item`` at its entity (host lock held, shard SERVING). A
        :class:`Traced` message is queued as ``TRACED`` (handled in its span)."""
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
            cell.after.append((entity_id, untraced(message), reply, deadline, key, 0.0))
            return None
        mailbox = cell.mailbox
        if mailbox.qsize() >= mailbox.capacity:
            if block:
                return cell
            if reply is not None:
                reply.fail(MailboxFull(f"mailbox of entity {cell.name!r} is full"))
            else:
                self.system.dead_letters.record(cell.name, untraced(message), "mailbox_full")
            return None
        if key is not None and reply is not None:
            reply = self.system.idempotency.admit(cell.name, key, reply)
            if reply is None:
                return None  # a repeat: answered from memory, or waits for the first
        cell.touched = True
        mailbox.put((TRACED if type(message) is Traced else USER, message, reply, deadline))
        return None

    def _buffer(self, slot: Slot, item: Item) -> None:
        if len(slot.buffer) >= BUFFER_LIMIT:
            self.entities.refuse(self.entity_type, item, "buffer_full")
            return
        entity_id, message, reply, deadline, key, _ = item
        slot.buffer.append((entity_id, message, reply, deadline, key, _monotonic()))

    def _activate(self, slot: Slot, entity_id: str) -> EntityCell:
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
