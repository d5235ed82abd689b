"""`EntityCell`: one activation of an entity, run as a light actor on the event loop.

It is a :class:`~taskmesh.actors.loopcell.LoopCell` (no thread, no task
while idle; the whole lifecycle and failure machinery of async actors), with
what an activation adds:

- its state is loaded (in a store worker thread) before ``on_activate``,
  and again after a failure, so a restart starts from what was saved;
- every message is checked against the node's lease deadline before it
  runs: a node whose lease may have expired handles nothing more, because
  another node may already own the shard (the fencing rule of
  :mod:`taskmesh.entities.host`);
- ``save()`` calls are written in order, coalesced, and waited for before
  the answer to the message goes out;
- when it ends, the messages still in its mailbox go back to its host (to a
  new activation, or to the shard's next owner), never to dead letters.

Its parent is an :class:`EntitySupervisor`, not a supervisor actor: an
activation that fails is restarted with a backoff; one that exits, or whose
shard is gone, is stopped. Every method runs on the event loop unless it
says otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, cast

from taskmesh.actors.directives import Action, Directive, Failed
from taskmesh.actors.idempotency import admitted_key
from taskmesh.actors.loopcell import LoopCell
from taskmesh.actors.mailbox import TRACED, USER
from taskmesh.actors.supervisor import Backoff
from taskmesh.actors.traced import untraced
from taskmesh.entities.entity import Saved
from taskmesh.entities.store import encode_state
from taskmesh.errors import ActorNotFound, ConfigError, StaleActivation

if TYPE_CHECKING:
    from taskmesh.actors.cell import Cell
    from taskmesh.entities.entity import Entity
    from taskmesh.entities.host import ShardHost
    from taskmesh.entities.ownership import Item

__all__ = ["EntityCell", "EntitySupervisor", "LeaseGone"]

log = logging.getLogger("taskmesh.entities")

_monotonic = time.monotonic


class LeaseGone(ActorNotFound):
    """The node's lease may have expired before the message ran: it was not
    handled here (an asker with retries tries again, at the shard's next owner)."""


class EntityCell(LoopCell):
    """One activation; made and registered by its :class:`ShardHost`."""

    __slots__ = (
        "after",
        "entity_id",
        "failures",
        "host",
        "idle_since",
        "loaded",
        "lost",
        "passivating",
        "restarting",
        "saver",
        "shard",
        "token",
        "touched",
    )

    def __init__(self, host: ShardHost, entity_id: str, shard: int, token: int) -> None:
        super().__init__(
            host.system,
            f"{host.entity_type}/{entity_id}",
            host.spec,
            parent=cast("Cell", host.supervisor),  # a parent needs only `alive` and `post`
            capacity=host.mailbox_size,
            restart="transient",
            max_attempts=host.max_attempts,
            loop=host.loop,
        )
        self._sync_life = host.sync_life
        self.host = host
        self.entity_id = entity_id
        self.shard = shard
        self.token = token
        self.after: list[Item] | None = None
        """Messages that came while it was passivating (host lock; made on use)."""
        self.passivating = False
        """Set (host lock) once it is being stopped: new messages wait in ``after``."""
        self.lost = False
        """Its shard is gone (lease lost): it ends without on_passivate."""
        self.restarting = False
        self.touched = False
        self.idle_since = _monotonic()
        self.loaded: Any = None
        self.saver: _Saver | None = None
        self.failures = 0

    # --- lifecycle --------------------------------------------------------------

    async def _start_instance(self, reason: BaseException | None) -> None:
        self.restarting = False
        host = self.host
        if host.store is not None:
            try:
                self.loaded = await host.load(self.entity_id)
            except Exception as error:
                log.warning("loading the state of %r failed: %r", self.name, error)
                self._needs_fresh = True
                self._fail(error)
                if not self._started:
                    self._set_started()
                return
        await super()._start_instance(reason)
        if self.instance is not None:
            if not host.async_receive:
                self._receive = self._handle_sync
            elif host.store is None:
                self._receive = self._fenced
            else:
                self._receive = self._handle_async

    def _fenced(self, message: Any) -> Any:
        """An async receive of a type without state: the lease check, then
        the entity's own coroutine (a plain call: no coroutine of our own)."""
        if _monotonic() >= self.host.serve_until:
            raise LeaseGone(f"entity {self.name!r}: this node's lease may have expired")
        return cast("Entity", self.instance).receive(message)

    async def _handle_async(self, message: Any) -> Any:
        if _monotonic() >= self.host.serve_until:
            raise LeaseGone(f"entity {self.name!r}: this node's lease may have expired")
        instance = cast("Entity", self.instance)
        result = await instance.receive(message)
        if self.saver is not None and self.saver.unsettled():
            await self.saver.settle()
        return result

    async def _handle_sync(self, message: Any) -> Any:
        if _monotonic() >= self.host.serve_until:
            raise LeaseGone(f"entity {self.name!r}: this node's lease may have expired")
        result = cast("Entity", self.instance).receive(message)
        if self.saver is not None and self.saver.unsettled():
            await self.saver.settle()
        return result

    def activated(self, entity: Entity) -> Any:
        """``Entity.on_start``: set the state, count, run ``on_activate``
        (not once the lease may have expired: no user code runs then)."""
        host = self.host
        if _monotonic() >= host.serve_until:
            raise LeaseGone(f"entity {self.name!r}: this node's lease may have expired")
        if host.store is not None:
            loaded, self.loaded = self.loaded, None
            entity.state = loaded if loaded is not None else entity.initial_state()
        host.on_activated(self)
        result = entity.on_activate()
        if host.store is not None:
            return self._then_settle(result)
        return result

    def passivated(self, entity: Entity) -> Any:
        """``Entity.on_stop``: run ``on_passivate`` unless the activation was
        lost or fails over to a fresh instance."""
        if self.lost or self.restarting or _monotonic() >= self.host.serve_until:
            return None
        result = entity.on_passivate()
        if self.saver is not None:
            return self._then_settle(result)
        return result

    async def _then_settle(self, result: Any) -> None:
        if asyncio.iscoroutine(result):
            await result
        if self.saver is not None and self.saver.unsettled():
            await self.saver.settle()

    def save(self, state: Any) -> Saved:
        """``Entity.save``: encode now, write in the background (in order)."""
        host = self.host
        if host.store is None:
            raise ConfigError(
                f"{host.entity_cls.__name__} is not persistent: set persistent = True"
            )
        data = encode_state(state, host.store.max_state_size)
        if self.saver is None:
            self.saver = _Saver(self)
        return Saved(self.saver.save(data))

    def _message_failed(
        self,
        message: Any,
        reply: Any,
        deadline: float | None,
        attempt: int,
        error: Exception,
    ) -> None:
        if isinstance(error, LeaseGone) and self._retry is None:
            # Not handled: keep it with the mailbox, for the shard's next owner.
            self._retry = (message, reply, deadline, attempt)
            self._fail(error)
            return
        super()._message_failed(message, reply, deadline, attempt, error)

    def _ended(self) -> None:
        self.host.on_ended(self)

    def drain_dead(self) -> None:
        """Leave the mailbox alone: :meth:`ShardHost.on_ended` hands what is
        left to the next activation or owner (any thread)."""
        if self.host.closing:
            super().drain_dead()

    def leftovers(self) -> list[Item]:
        """Unhandled user messages, in order (host lock, after the end)."""
        now = _monotonic()
        items: list[Item] = []
        for kind, message, reply, deadline in [*self._held(), *self.mailbox.drain()]:
            if kind in (USER, TRACED):  # handed on without its trace context, with its key
                key = admitted_key(reply)
                items.append((self.entity_id, untraced(message), reply, deadline, key, now))
            elif reply is not None:  # a STOP's ack
                reply.set(True)
        return items


class _Saver:
    """The saves of one activation: written in order by one task, a burst
    coalesced into one write (only the latest state matters)."""

    __slots__ = ("_cell", "_data", "_error", "_seq", "_task", "_waiters", "_written")

    def __init__(self, cell: EntityCell) -> None:
        self._cell = cell
        self._data: bytes | None = None
        self._seq = 0
        self._written = 0
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def unsettled(self) -> bool:
        return self._written < self._seq or self._error is not None

    def save(self, data: bytes | None) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        self._seq += 1
        self._data = data
        future: asyncio.Future[None] = loop.create_future()
        future.add_done_callback(_retrieved)
        self._waiters.append((self._seq, future))
        if self._task is None:
            self._task = loop.create_task(self._write())
        return future

    async def _write(self) -> None:
        cell = self._cell
        host = cell.host
        try:
            while self._written < self._seq:
                seq, data = self._seq, self._data
                error: BaseException | None = None
                try:
                    await host.write(cell, data)
                except Exception as exc:
                    error = exc
                    if self._error is None:
                        self._error = exc
                self._written = seq
                waiters, self._waiters = self._waiters, []
                for wanted, future in waiters:
                    if wanted > seq:
                        self._waiters.append((wanted, future))
                    elif not future.done():
                        if error is None:
                            future.set_result(None)
                        else:
                            future.set_exception(error)
        finally:
            self._task = None

    async def settle(self) -> None:
        """Wait for every save so far; raise the first error since the last settle."""
        if self._written < self._seq:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.add_done_callback(_retrieved)
            self._waiters.append((self._seq, future))
            await asyncio.wait([future])
        error, self._error = self._error, None
        if error is not None:
            raise error


def _retrieved(future: asyncio.Future[None]) -> None:
    """Mark a save's error as seen: it surfaces through ``settle`` anyway."""
    if not future.cancelled():
        future.exception()


class EntitySupervisor:
    """The parent of one type's activations (it is not an actor).

    A failing activation is restarted after a backoff that grows with its
    failures (its state loaded again, ``on_activate`` again); one that
    exits (``self.stop()``, passivation) or whose save was refused as stale
    is stopped for good. ``post`` runs on the event loop (the child's
    consumer), and decides there.
    """

    alive = True

    def __init__(self, host: ShardHost, backoff: Backoff | None = None) -> None:
        self._host = host
        self._backoff = backoff or Backoff(initial=0.1, maximum=5.0)

    def post(self, message: object) -> None:
        if not isinstance(message, Failed):
            return
        child = cast("EntityCell", message.child)
        if message.generation != child.generation or child.ended:
            return
        error = message.error
        if error is None or isinstance(error, (StaleActivation, LeaseGone)):
            if error is not None:
                child.lost = True
                log.info("entity %r stops: %s", child.name, error)
            child.post(Directive(Action.STOP, terminated_reason="passivated"))
            return
        child.failures += 1
        child.restarting = True
        delay = self._backoff.delay(child.failures)
        log.info("entity %r failed with %r; restarting in %.2f s", child.name, error, delay)
        self._host.restarts += 1
        child.post(Directive(Action.RESTART, error, delay))
