"""`EntityInbox`: where a node takes entity messages from other nodes.

The transport's I/O thread calls ``ActorSystem.deliver(target, ...)`` for
every message from another node. An entity message's target starts with
``~`` (no actor name can), so the system misses it in its name table and
calls :meth:`EntityInbox.deliver` (its ``fallback_deliver``), which puts it
in the entity's mailbox right there: one dictionary miss and one lookup
more than a message to a named actor, and no second hop through a
per-node "region" actor, which would have cost a thread hand-off or an
event loop turn per message. Named actors pay nothing for it: only the
miss path looks at the hook. It never blocks: a full mailbox of an
active entity makes the transport keep the message and slow its sender
down, as for a named actor (:meth:`EntityInbox.on_space` says when there
is room), a moving shard buffers, a shard owned elsewhere is forwarded,
and an entity not active yet is activated.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from taskmesh.actors.future import ReplyTo
from taskmesh.actors.mailbox import TRACED, USER
from taskmesh.actors.traced import Traced, untraced
from taskmesh.entities.ownership import SERVING, Item
from taskmesh.entities.shards import STATS, parse_barrier, parse_target, shard_of

if TYPE_CHECKING:
    from taskmesh.entities.host import ShardHost
    from taskmesh.entities.service import Entities

__all__ = ["EntityInbox"]

_monotonic = time.monotonic

KEPT_TARGETS = 100_000
"""Parsed targets kept (the last ones seen): parsing a target costs more
than looking it up."""


class EntityInbox:
    """A node's entity side of ``deliver``; see the module docstring. Its
    methods run on the transport's I/O thread."""

    def __init__(self, entities: Entities) -> None:
        self._entities = entities
        self._targets: dict[str, tuple[ShardHost, str]] = {}

    def deliver(
        self,
        name: str,
        message: Any,
        reply: ReplyTo | None,
        deadline: float | None,
        key: str | None = None,
    ) -> bool | None:
        """The actor system's fallback: take an entity message from another
        node (the transport's I/O thread; never blocks). False if ``name``
        is not an entity target; None, taking nothing, if it goes to an
        active entity whose mailbox is full (the transport keeps it). A
        :class:`Traced` message (it came with a trace context) is handled
        inside its span by an entity of this node; one handed on to another
        node loses its context."""
        entities = self._entities
        known = self._targets.get(name)
        if known is not None and key is None and type(message) is not Traced:
            # The common case, kept short: a target seen before, to an entity
            # active here (see ShardHost.deliver_active).
            active, entity_id = known
            cell = active.cells.get(entity_id)
            if cell is not None and not cell.passivating:
                mailbox = cell.mailbox
                if active.slots[cell.shard].state == SERVING and _monotonic() < active.serve_until:
                    if mailbox.qsize() >= mailbox.capacity:
                        return None
                    cell.touched = True
                    mailbox.put((0, message, reply, deadline))
                    if not cell.alive:
                        active._rescue(cell)
                    return True
        parts = name.split("/", 2)
        head = parts[0]
        if head[:1] != "~":
            return False
        if len(parts) == 3:
            host = entities.hosts.get(head[1:])
            if host is not None and parts[2]:
                if len(self._targets) >= KEPT_TARGETS:
                    self._targets.clear()
                self._targets[name] = (host, parts[2])
                if key is None:
                    kind = TRACED if type(message) is Traced else USER
                    taken = host.deliver_active(parts[2], message, reply, deadline, kind)
                    if taken is not False:
                        return taken  # True, or None: full
                elif host.full(parts[2]):
                    # Kept by the transport with its key, and delivered
                    # (admitted once) when there is room, as an unkeyed one.
                    return None
        if len(parts) == 3 and head[1:2] != "~" and not entities.closed:
            host = entities.hosts.get(head[1:])
            token = parts[1]
            if host is not None and parts[2] and token.isdigit():
                host.deliver(int(token), parts[2], message, reply, deadline, key, block=False)
                return True
        # From here on the trace context, if any, is dropped: these messages
        # are refused, or handed on to the node that holds their shard.
        message = untraced(message)
        if entities.closed:
            entities.refuse("?", (name, message, reply, deadline, key, 0.0), "actor_stopped")
            return True
        if head[1:2] == "~":
            self._barrier(name, reply)
            return True
        if name == STATS:
            if reply is not None:
                reply.set(entities.stats())
            return True
        parsed = parse_target(name)
        if parsed is None:
            entities.refuse("?", (name, message, reply, deadline, key, 0.0), "actor_not_found")
            return True
        entity_type, token_number, entity_id = parsed
        view = entities.map.view(entity_type)
        item: Item = (entity_id, message, reply, deadline, key, 0.0)
        if view is None or not view.shards:
            entities.refuse(entity_type, item, "actor_not_found")
        elif token_number > entities.map.revision:
            entities.router.hold(
                entity_type, shard_of(entity_id, view.shards), [item], token_number
            )
        else:
            entities.router.pass_on(entity_type, shard_of(entity_id, view.shards), [item])
        return True

    def on_space(self, name: str, callback: Callable[[], None]) -> bool:
        """The actor system's ``on_space`` for an entity target that
        :meth:`deliver` found full: call ``callback()`` once its mailbox has
        room, or its activation ended (its thread or the event loop). False,
        registering nothing, when it has room already or is not active."""
        known = self._targets.get(name)
        if known is None:
            return False
        cell = known[0].cells.get(known[1])
        return cell is not None and cell.mailbox.on_space(callback)

    def _barrier(self, name: str, reply: ReplyTo | None) -> None:
        entities = self._entities
        parsed = parse_barrier(name)
        if parsed is None or reply is None:
            return
        entity_type, token, shard = parsed
        host = entities.hosts.get(entity_type)
        if host is not None:
            host.barrier(token, shard, reply)
            return
        item: Item = ("", None, reply, None, None, 0.0)
        if token > entities.map.revision:
            entities.router.hold(entity_type, shard, [item], token)
        else:
            entities.router.pass_on(entity_type, shard, [item])
