"""`EntityRouter`: the sending side: a message to an entity goes to its shard's owner.

Every node and every client that sends to entities has one. It reads the
owner of the id's shard from the :class:`~taskmesh.entities.shardmap.ShardMap`
(a watch-fed list: no etcd round trip, no lock), and sends in one hop, to
the local host or through the transport with an entity target
(:mod:`~taskmesh.entities.shards`). When the shard has no owner (it is
moving, or its node died and its lease has not expired yet) the message is
held here, per shard and in order, and sent when an owner appears.

**Order per sender across a move.** Messages this process sent to the old
owner may still be in flight there (the old owner forwards them) when the
map already names the new one; sending straight to the new owner could
overtake them. So the first message for a shard whose owner changed, after
this process had sent to the old (and still live) owner, waits behind a
*barrier*: an ask to the old owner that follows the same path as those
messages and is answered by the new owner once they are all queued there.
Meanwhile later messages for that shard are held; then they all go, in
order. A barrier costs one round trip per moved shard and sender, only
when the sender had used the shard; if the old owner is gone, the messages
in flight to it are lost with it (as for any node's death) and nothing
waits.

Per-shard locks keep "decide the route, enqueue the message" atomic, so a
thread's messages keep their order also against another thread starting a
barrier. ``hold`` and ``pass_on`` are for hosts (a node's entity host hands
on messages for shards it does not own); they never block, so the I/O
thread may call them. Held messages that find no owner within
``buffer_timeout`` seconds become ``no_shard_owner`` dead letters (asks fail
at their own deadline).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any

from taskmesh.actors.flow import wait_for_room, wait_for_room_async
from taskmesh.actors.future import Reply, ReplyTo
from taskmesh.entities.shards import barrier_target, entity_target, shard_of
from taskmesh.errors import ActorNotFound, TaskmeshError

if TYPE_CHECKING:
    from taskmesh.entities.cell import EntityCell
    from taskmesh.entities.host import Item
    from taskmesh.entities.layout import Assignment
    from taskmesh.entities.ref import EntityRef
    from taskmesh.entities.service import Entities
    from taskmesh.entities.shardmap import TypeView

__all__ = ["EntityRouter"]

log = logging.getLogger("taskmesh.entities")

_monotonic = time.monotonic

_NONE, _SENT, _DONE = 0, 1, 2
_RECHECK = 0.05
"""Seconds before a held shard is looked at again when no event will wake it
(this node's host has not caught up with the map yet)."""


class _Pending:
    """Messages held for one shard, in order, and what they wait for."""

    __slots__ = ("barrier", "barrier_state", "items", "recheck", "revision")

    def __init__(self) -> None:
        self.items: deque[Item] = deque()
        self.revision = 0  # the map must have reached this revision
        self.recheck = 0.0  # do not look again before this time
        self.barrier: Assignment | None = None  # the old owner to flush through
        self.barrier_state = _NONE


class _Lane:
    """The routing state of one entity type in this process."""

    __slots__ = ("locks", "name", "pending", "sent", "shards", "view")

    def __init__(self, view: TypeView) -> None:
        self.view = view
        self.name = view.name
        self.shards = view.shards
        self.locks = [threading.RLock() for _ in range(view.shards)]
        self.sent: list[Assignment | None] = [None] * view.shards
        """The assignment this process last sent each shard's messages by."""
        self.pending: dict[int, _Pending] = {}


class EntityRouter:
    """See the module docstring. Thread-safe; every method runs in the
    caller's thread unless it says otherwise."""

    def __init__(
        self,
        entities: Entities,
        *,
        buffer_timeout: float = 30.0,
        buffer_limit: int = 10_000,
        barrier_timeout: float = 5.0,
    ) -> None:
        self._entities = entities
        self._node_id = entities.node_id
        self._map = entities.map
        self._transport = entities.transport
        self._lanes: dict[str, _Lane] = {}
        self._lock = threading.Lock()
        self.buffer_timeout = buffer_timeout
        self.buffer_limit = buffer_limit
        self.barrier_timeout = barrier_timeout
        self._wakes: SimpleQueue[tuple[str, int] | None] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._map.subscribe(self._on_map)

    def stop(self) -> None:
        """Stop the flusher thread; held messages become dead letters."""
        self._stopped = True
        self._wakes.put(None)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)
        for lane in list(self._lanes.values()):
            for shard in list(lane.pending):
                with lane.locks[shard]:
                    pending = lane.pending.pop(shard, None)
                if pending is not None:
                    for item in pending.items:
                        self._entities.refuse(lane.name, item, "actor_stopped")

    # --- lanes ----------------------------------------------------------------------

    def _lane(self, entity_type: str) -> _Lane:
        lane = self._lanes.get(entity_type)
        if lane is not None and lane.shards == lane.view.shards:
            return lane
        view = self._map.view(entity_type)
        if view is None or not view.shards:
            view = self._map.read_through(entity_type)
            if view is None:
                raise ActorNotFound(f"no node hosts entities of type {entity_type!r}")
        with self._lock:
            lane = self._lanes.get(entity_type)
            if lane is None or lane.shards != view.shards:
                lane = self._lanes[entity_type] = _Lane(view)
        return lane

    def pending_count(self, entity_type: str | None = None) -> int:
        """Messages held in this process (for one type, or all)."""
        lanes = [self._lanes[entity_type]] if entity_type in self._lanes else []
        if entity_type is None:
            lanes = list(self._lanes.values())
        return sum(len(p.items) for lane in lanes for p in list(lane.pending.values()))

    # --- senders -----------------------------------------------------------------

    def _resolve(self, ref: EntityRef) -> tuple[_Lane, int]:
        """The ref's lane and shard, computed once per ref (caller's thread)."""
        lane = ref._lane
        if lane is None or lane.shards != lane.view.shards:
            lane = self._lane(ref.entity_type)
            ref._shard = shard_of(ref.entity_id, lane.shards)
            ref._lane = lane
            ref._owner = None
        return lane, ref._shard

    def _remote_for(self, ref: EntityRef, lane: _Lane, owner: Assignment) -> Any:
        """The transport ref to ``ref``'s entity at ``owner``, kept by the ref."""
        remote = ref._remote
        if remote is None or ref._owner is not owner:
            remote = self._ref(lane, owner, entity_target(lane.name, owner.token, ref.entity_id))
            ref._owner = owner
            ref._remote = remote
        return remote

    def tell(self, ref: EntityRef, message: Any, *, block: bool = True) -> None:
        """At most once; see ``EntityRef.tell``."""
        lane, shard = self._resolve(ref)
        with lane.locks[shard]:
            # The fast path: the shard's owner is the one this process used last.
            owner = lane.sent[shard]
            if (
                owner is not None
                and shard not in lane.pending
                and lane.view.owner(shard) is owner
                and owner.node != self._node_id
            ):
                self._remote_for(ref, lane, owner).tell(message)
                return
        item: Item = (ref.entity_id, message, None, None, None, 0.0)
        while True:
            full = self._send(lane, shard, item, block=block)
            if full is None:
                return
            wait_for_room(full, message, timeout=self._entities.send_timeout, ask=False)

    async def tell_async(self, ref: EntityRef, message: Any) -> None:
        """``tell`` that waits for room without blocking the event loop."""
        lane, shard = self._resolve(ref)
        item: Item = (ref.entity_id, message, None, None, None, 0.0)
        while True:
            full = self._send(lane, shard, item, block=True)
            if full is None:
                return
            await wait_for_room_async(full, message, timeout=self._entities.send_timeout, ask=False)

    def ask(
        self, ref: EntityRef, message: Any, *, timeout: float, key: str | None, begin: bool
    ) -> tuple[str, Reply]:
        """Send an ask; returns the node it went to ("" if held here) and
        its reply. ``begin``: the caller waits at once (a remote ask then
        reads its answer in this thread, the fast path)."""
        lane, shard = self._resolve(ref)
        deadline = _monotonic() + timeout
        while True:
            with lane.locks[shard]:
                owner = None if shard in lane.pending else self._route(lane, shard)
                if owner is not None and owner.node != self._node_id:
                    lane.sent[shard] = owner
                    remote = self._remote_for(ref, lane, owner)
                    if begin:
                        answer = remote.begin_ask(message, timeout=timeout, idempotency_key=key)
                    else:
                        answer = remote.ask_async(message, timeout=timeout, idempotency_key=key)
                    return owner.node, answer
                reply = Reply(deadline)
                item: Item = (ref.entity_id, message, reply, deadline, key, 0.0)
                if owner is None:
                    self._hold(lane, shard, item, 0)
                    return "", reply
                lane.sent[shard] = owner
                full = self._dispatch(lane, shard, owner, item, block=True)
                if full is None:
                    return owner.node, reply
            wait_for_room(full, message, timeout=max(0.0, deadline - _monotonic()), ask=True)

    def _send(self, lane: _Lane, shard: int, item: Item, *, block: bool) -> EntityCell | None:
        with lane.locks[shard]:
            owner = None if shard in lane.pending else self._route(lane, shard)
            if owner is None:
                self._hold(lane, shard, item, 0)
                return None
            lane.sent[shard] = owner
            return self._dispatch(lane, shard, owner, item, block=block)

    def _route(self, lane: _Lane, shard: int) -> Assignment | None:
        """The owner to send to now, or None after parking the shard for a
        barrier or an owner (lane lock held, nothing held for the shard)."""
        owner = lane.view.owner(shard)
        if owner is None:
            return None
        last = lane.sent[shard]
        if last is not None and last.token != owner.token and self._flush_through(last, owner):
            pending = lane.pending[shard] = _Pending()
            pending.barrier = last
            self._wake(lane.name, shard)
            return None
        return owner

    def _flush_through(self, last: Assignment, owner: Assignment) -> bool:
        """Whether messages sent by ``last`` may still be in flight through
        a live node other than ``owner`` (and this one)."""
        node = last.node
        if node == owner.node or node == self._entities.node_id:
            return False
        return self._entities.reachable(node)

    # --- hosts (never block) ---------------------------------------------------------

    def pass_on(self, entity_type: str, shard: int, items: Iterable[Item]) -> None:
        """Messages for a shard this node does not serve: send them on to the
        owner the map shows, or hold them until there is one (any thread)."""
        try:
            lane = self._lane(entity_type)
        except ActorNotFound:
            for item in items:
                self._entities.refuse(entity_type, item, "no_shard_owner")
            return
        with lane.locks[shard]:
            owner = lane.view.owner(shard)
            if owner is not None and owner.node == self._entities.node_id:
                # The map says we own it and the host does not serve it yet
                # (or no longer): look again shortly, and when the host wakes us.
                for item in items:
                    pending = self._hold(lane, shard, item, 0)
                pending.recheck = _monotonic() + _RECHECK
                self._wake(lane.name, shard)
                return
            for item in items:
                self._send(lane, shard, item, block=False)

    def hold(self, entity_type: str, shard: int, items: Iterable[Item], revision: int) -> None:
        """Hold messages for ``shard`` until the map reaches ``revision`` (a
        sender saw an assignment this node has not seen yet, or the node just
        gave the shard up), then route them (any thread)."""
        try:
            lane = self._lane(entity_type)
        except ActorNotFound:
            for item in items:
                self._entities.refuse(entity_type, item, "no_shard_owner")
            return
        with lane.locks[shard]:
            for item in items:
                self._hold(lane, shard, item, revision)
        self._wake(lane.name, shard)

    def wake(self, entity_type: str, shard: int) -> None:
        """Look at ``shard``'s held messages now (a host started serving it)."""
        lane = self._lanes.get(entity_type)
        if lane is not None and shard in lane.pending:
            self._wake(entity_type, shard)

    def _hold(self, lane: _Lane, shard: int, item: Item, revision: int) -> _Pending:
        pending = lane.pending.get(shard)
        if pending is None:
            pending = lane.pending[shard] = _Pending()
            self._wake(lane.name, shard)
        if revision > pending.revision:
            pending.revision = revision
        if len(pending.items) >= self.buffer_limit:
            self._entities.refuse(lane.name, item, "buffer_full")
            return pending
        entity_id, message, reply, deadline, key, since = item
        pending.items.append((entity_id, message, reply, deadline, key, since or _monotonic()))
        return pending

    # --- sending (lane lock held) -------------------------------------------------------

    def _dispatch(
        self, lane: _Lane, shard: int, owner: Assignment, item: Item, *, block: bool
    ) -> EntityCell | None:
        entity_id, message, reply, deadline, key, _ = item
        if owner.node == self._entities.node_id:
            host = self._entities.hosts.get(lane.name)
            if host is None:  # the map names us for a type we do not host
                pending = self._hold(lane, shard, item, 0)
                pending.recheck = _monotonic() + _RECHECK
                return None
            if not entity_id:
                assert reply is not None
                host.barrier(owner.token, shard, reply)
                return None
            return host.deliver(owner.token, entity_id, message, reply, deadline, key, block=block)
        if entity_id:
            target = entity_target(lane.name, owner.token, entity_id)
        else:
            target = barrier_target(lane.name, owner.token, shard)
        ref = self._ref(lane, owner, target)
        if reply is None:
            ref.tell(message)
            return None
        timeout = None
        if deadline is not None:
            timeout = deadline - _monotonic()
            if timeout <= 0:
                self._entities.refuse(lane.name, item, "expired")
                return None
        try:
            answer = ref.ask_async(message, timeout=timeout, idempotency_key=key)
        except TaskmeshError as error:
            reply.fail(error)
            return None
        answer.add_done_callback(_chain(reply))
        return None

    def _ref(self, lane: _Lane, owner: Assignment, target: str) -> Any:
        key = None
        if self._transport.keys is not None:
            record = lane.view.hosts.get(owner.node)
            if record is not None and record.public_key:
                key = record.public_key.encode()
        return self._transport.ref(owner.address, target, server_key=key)

    # --- the flusher thread ----------------------------------------------------------

    def _wake(self, entity_type: str, shard: int) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stopped:
                    self._thread = threading.Thread(
                        target=self._run, name="taskmesh-entities-router", daemon=True
                    )
                    self._thread.start()
        self._wakes.put((entity_type, shard))

    def _on_map(self, entity_type: str) -> None:
        """The map changed (watch thread): held shards of the type may go."""
        lane = self._lanes.get(entity_type)
        if lane is not None:
            for shard in list(lane.pending):
                self._wakes.put((entity_type, shard))

    def _run(self) -> None:
        """The flusher thread (``taskmesh-entities-router``)."""
        last_scan = _monotonic()
        while not self._stopped:
            try:
                wake = self._wakes.get(timeout=_RECHECK)
            except Empty:
                wake = None
            if wake is not None:
                lane = self._lanes.get(wake[0])
                if lane is not None:
                    self._flush(lane, wake[1])
            now = _monotonic()
            if now - last_scan >= _RECHECK:
                last_scan = now
                for lane in list(self._lanes.values()):
                    for shard in list(lane.pending):
                        self._flush(lane, shard)

    def _flush(self, lane: _Lane, shard: int) -> None:
        with lane.locks[shard]:
            pending = lane.pending.get(shard)
            if pending is None:
                return
            now = _monotonic()
            self._expire(lane, pending, now)
            if pending.barrier_state == _SENT or now < pending.recheck:
                return
            if self._map.revision < pending.revision:
                return
            owner = lane.view.owner(shard)
            if owner is None:
                if not pending.items and pending.barrier is None:
                    del lane.pending[shard]
                return
            if pending.barrier_state == _NONE:
                # Also when the shard had no owner for a while: what this process
                # sent to the previous one may still be on its way through it.
                last = pending.barrier or lane.sent[shard]
                if (
                    last is not None
                    and last.token != owner.token
                    and self._flush_through(last, owner)
                ):
                    pending.barrier = last
                    self._send_barrier(lane, shard, pending, owner)
                    return
            del lane.pending[shard]
            lane.sent[shard] = owner
            for item in pending.items:
                if shard in lane.pending:  # the host held it again: keep the order
                    self._hold(lane, shard, item, 0)
                else:
                    self._dispatch(lane, shard, owner, item, block=False)

    def _send_barrier(self, lane: _Lane, shard: int, pending: _Pending, owner: Assignment) -> None:
        old = pending.barrier
        assert old is not None
        pending.barrier_state = _SENT
        ref = self._ref(lane, old, barrier_target(lane.name, owner.token, shard))

        def done(_: Reply) -> None:  # the replier's thread
            pending.barrier_state = _DONE
            self._wakes.put((lane.name, shard))

        try:
            answer = ref.ask_async(None, timeout=self.barrier_timeout)
        except TaskmeshError:
            pending.barrier_state = _DONE
            self._wakes.put((lane.name, shard))
            return
        answer.add_done_callback(done)

    def _expire(self, lane: _Lane, pending: _Pending, now: float) -> None:
        items = pending.items
        if not items:
            return
        limit = now - self.buffer_timeout
        if not any(
            (deadline is not None and deadline <= now) or (deadline is None and since <= limit)
            for _, _, _, deadline, _, since in items
        ):
            return
        kept: deque[Item] = deque()
        for item in items:
            deadline, since = item[3], item[5]
            if deadline is not None and deadline <= now:
                self._entities.refuse(lane.name, item, "expired")
            elif deadline is None and since <= limit:
                self._entities.refuse(lane.name, item, "no_shard_owner")
            else:
                kept.append(item)
        pending.items = kept


def _chain(reply: ReplyTo) -> Callable[[Reply], None]:
    """Pass a forwarded ask's answer back to the original asker."""

    def done(answer: Reply) -> None:
        try:
            value = answer.get(0)
        except BaseException as error:
            reply.fail(error)
        else:
            reply.set(value)

    return done
