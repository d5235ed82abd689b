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
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from taskmesh.actors.flow import wait_for_room, wait_for_room_async
from taskmesh.actors.future import Reply, ReplyTo
from taskmesh.entities.holding import RECHECK, Flusher, Lane, Pending
from taskmesh.entities.shards import barrier_target, entity_target, shard_of
from taskmesh.errors import ActorNotFound, TaskmeshError

if TYPE_CHECKING:
    from taskmesh.entities.cell import EntityCell
    from taskmesh.entities.layout import Assignment
    from taskmesh.entities.ownership import Item
    from taskmesh.entities.ref import EntityRef
    from taskmesh.entities.service import Entities

__all__ = ["EntityRouter"]

log = logging.getLogger("taskmesh.entities")

_monotonic = time.monotonic


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
        self._lanes: dict[str, Lane] = {}
        self._addresses: dict[str, str] = {}  # node -> where this process last sent to it
        self._lock = threading.Lock()
        self.buffer_timeout = buffer_timeout
        self.buffer_limit = buffer_limit
        self.barrier_timeout = barrier_timeout
        self._flusher = Flusher(self, entities)
        self._wake = self._flusher.wake
        self._map.subscribe(self._flusher.on_map)

    @property
    def lanes(self) -> dict[str, Lane]:
        """The routing state per entity type (for the flusher)."""
        return self._lanes

    def stop(self) -> None:
        """Stop the flusher thread; held messages become dead letters."""
        self._flusher.stop()
        for lane in list(self._lanes.values()):
            for shard in list(lane.pending):
                with lane.locks[shard]:
                    pending = lane.pending.pop(shard, None)
                if pending is not None:
                    for item in pending.items:
                        self._entities.refuse(lane.name, item, "actor_stopped")

    # --- lanes ----------------------------------------------------------------------

    def _lane(self, entity_type: str) -> Lane:
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
                lane = self._lanes[entity_type] = Lane(view)
        return lane

    def pending_count(self, entity_type: str | None = None) -> int:
        """Messages held in this process (for one type, or all)."""
        lanes = [self._lanes[entity_type]] if entity_type in self._lanes else []
        if entity_type is None:
            lanes = list(self._lanes.values())
        return sum(len(p.items) for lane in lanes for p in list(lane.pending.values()))

    # --- senders -----------------------------------------------------------------

    def _resolve(self, ref: EntityRef) -> tuple[Lane, int]:
        """The ref's lane and shard, computed once per ref (caller's thread)."""
        lane = ref._lane
        if lane is None or lane.shards != lane.view.shards:
            lane = self._lane(ref.entity_type)
            ref._shard = shard_of(ref.entity_id, lane.shards)
            ref._lane = lane
            ref._owner = None
        return lane, ref._shard

    def _remote_for(self, ref: EntityRef, lane: Lane, owner: Assignment) -> Any:
        """The transport ref to ``ref``'s entity at ``owner``, kept by the ref."""
        remote = ref._remote
        if remote is None or ref._owner is not owner:
            remote = self.remote(lane, owner, entity_target(lane.name, owner.token, ref.entity_id))
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
                    self.hold_one(lane, shard, item, 0)
                    return "", reply
                lane.sent[shard] = owner
                full = self.dispatch(lane, shard, owner, item, block=True)
                if full is None:
                    return owner.node, reply
            wait_for_room(full, message, timeout=max(0.0, deadline - _monotonic()), ask=True)

    def _send(self, lane: Lane, shard: int, item: Item, *, block: bool) -> EntityCell | None:
        with lane.locks[shard]:
            owner = None if shard in lane.pending else self._route(lane, shard)
            if owner is None:
                self.hold_one(lane, shard, item, 0)
                return None
            lane.sent[shard] = owner
            return self.dispatch(lane, shard, owner, item, block=block)

    def _route(self, lane: Lane, shard: int) -> Assignment | None:
        """The owner to send to now, or None after parking the shard for a
        barrier or an owner (lane lock held, nothing held for the shard)."""
        owner = lane.view.owner(shard)
        if owner is None:
            return None
        last = lane.sent[shard]
        if last is not None and last.token != owner.token and self.flush_through(last, owner):
            pending = lane.pending[shard] = Pending()
            pending.barrier = last
            self._wake(lane.name, shard)
            return None
        return owner

    def flush_through(self, last: Assignment, owner: Assignment) -> bool:
        """Whether messages sent by ``last`` may still be in flight through
        a live node other than ``owner`` (and this one)."""
        node = last.node
        if node == owner.node or node == self._entities.node_id:
            return False
        return self.reachable(node)

    def reachable(self, node: str) -> bool:
        """Whether ``node`` is a live member that neither the locator nor
        this process's link to it suspects (any thread). The locator learns
        which node a link leads to from the refs it made only; entity
        messages go through refs of their own, so a frozen owner shows here."""
        if not self._entities.reachable(node):
            return False
        address = self._addresses.get(node)
        return address is None or self._transport.peer_state(address) not in ("suspect", "down")

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
                    pending = self.hold_one(lane, shard, item, 0)
                pending.recheck = _monotonic() + RECHECK
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
                self.hold_one(lane, shard, item, revision)
        self._wake(lane.name, shard)

    def wake(self, entity_type: str, shard: int) -> None:
        """Look at ``shard``'s held messages now (a host started serving it)."""
        lane = self._lanes.get(entity_type)
        if lane is not None and shard in lane.pending:
            self._wake(entity_type, shard)

    def hold_one(self, lane: Lane, shard: int, item: Item, revision: int) -> Pending:
        pending = lane.pending.get(shard)
        if pending is None:
            pending = lane.pending[shard] = Pending()
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

    def dispatch(
        self, lane: Lane, shard: int, owner: Assignment, item: Item, *, block: bool
    ) -> EntityCell | None:
        entity_id, message, reply, deadline, key, _ = item
        if owner.node == self._entities.node_id:
            host = self._entities.hosts.get(lane.name)
            if host is None:  # the map names us for a type we do not host
                pending = self.hold_one(lane, shard, item, 0)
                pending.recheck = _monotonic() + RECHECK
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
        ref = self.remote(lane, owner, target)
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

    def remote(self, lane: Lane, owner: Assignment, target: str) -> Any:
        self._addresses[owner.node] = owner.address
        key = None
        if self._transport.keys is not None:
            record = lane.view.hosts.get(owner.node)
            if record is not None and record.public_key:
                key = record.public_key.encode()
        return self._transport.ref(owner.address, target, server_key=key)


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
