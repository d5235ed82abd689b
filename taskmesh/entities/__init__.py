"""taskmesh.entities: sharded entities ("virtual actors") addressed by type and id.

``class Device(taskmesh.Entity)`` with an ``entity_type``; ``node.host(Device)``
on the nodes that run them; ``node.entity("device", "dock-3").ask(...)`` or
``client.entity(...)`` from anywhere. Each type's ids are spread over a fixed
number of shards, placed on the hosting nodes by the leader; an entity is
activated on first message where its shard lives, passivated when idle,
handed over when its shard moves, and never active twice at once (see
docs/entities.md and docs/guarantees.md).
"""

from __future__ import annotations

from taskmesh.entities.entity import Entity, Saved
from taskmesh.entities.etcd_store import EtcdStore
from taskmesh.entities.postgres_store import PostgresStore
from taskmesh.entities.ref import EntityRef
from taskmesh.entities.store import StateStore, StoreContext

__all__ = [
    "Entity",
    "EntityRef",
    "EtcdStore",
    "PostgresStore",
    "Saved",
    "StateStore",
    "StoreContext",
]
