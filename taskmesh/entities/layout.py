"""Where entities live in etcd, and the records stored there.

Under ``/taskmesh/<cluster>/entities/`` (one watch reads it all)::

    hosts/<type>/<node>       {"address", "public_key", "shards", "draining"}
                              under the node's lease: this node hosts <type>
    shards/<type>/<shard>     {"node", "address"}, under the owner's lease;
                              written (created) by the leader only, deleted
                              by the owner when it hands the shard over, or
                              by etcd when the owner's lease expires. Its
                              revision is the assignment's fencing token.
    handoffs/<type>/<shard>   {"from", "to", "released"}, no lease: the
                              leader asks an owner to hand over; the owner
                              marks it released when done
    rebalances/<type>         {"at", "leader", "assigned", "moved"}: the last
                              round that changed assignments

Persisted state is kept apart, at ``/taskmesh/<cluster>/entity-state/
<type>/<id>`` (the etcd store), so that the watch never carries it.
"""

from __future__ import annotations

from dataclasses import dataclass

from taskmesh.cluster.etcd import KeyValue
from taskmesh.cluster.keys import decode, encode

__all__ = ["Assignment", "EntityKeys", "Handoff", "HostRecord", "Rebalance"]


class EntityKeys:
    """Key names for the entities of one cluster."""

    def __init__(self, cluster: str) -> None:
        root = f"/taskmesh/{cluster}/"
        self.root = root + "entities/"
        self.hosts = self.root + "hosts/"
        self.shards = self.root + "shards/"
        self.handoffs = self.root + "handoffs/"
        self.rebalances = self.root + "rebalances/"
        self.state = root + "entity-state/"

    def host(self, entity_type: str, node: str) -> str:
        return f"{self.hosts}{entity_type}/{node}"

    def shard(self, entity_type: str, shard: int) -> str:
        return f"{self.shards}{entity_type}/{shard}"

    def handoff(self, entity_type: str, shard: int) -> str:
        return f"{self.handoffs}{entity_type}/{shard}"

    def rebalance(self, entity_type: str) -> str:
        return self.rebalances + entity_type

    def state_of(self, entity_type: str, entity_id: str) -> str:
        return f"{self.state}{entity_type}/{entity_id}"

    def split(self, key: str) -> tuple[str, str, str] | None:
        """``(kind, type, rest)`` of a key under :attr:`root` (kind is
        ``hosts``, ``shards``, ``handoffs`` or ``rebalances``), or None."""
        tail = key[len(self.root) :]
        kind, _, rest = tail.partition("/")
        entity_type, _, rest = rest.partition("/")
        if not kind or not entity_type:
            return None
        return kind, entity_type, rest


@dataclass(frozen=True, slots=True)
class HostRecord:
    """A node that hosts a type: where it listens, its shard count, its lease."""

    node: str
    address: str
    public_key: str | None
    shards: int
    draining: bool
    lease: int

    def to_bytes(self) -> bytes:
        return encode(
            {
                "address": self.address,
                "public_key": self.public_key,
                "shards": self.shards,
                "draining": self.draining,
            }
        )

    @classmethod
    def from_kv(cls, node: str, kv: KeyValue) -> HostRecord:
        raw = decode(kv.value)
        shards = raw.get("shards")
        return cls(
            node=node,
            address=str(raw.get("address", "")),
            public_key=raw.get("public_key") or None,
            shards=shards if isinstance(shards, int) and shards > 0 else 0,
            draining=bool(raw.get("draining", False)),
            lease=kv.lease,
        )


@dataclass(frozen=True, slots=True)
class Assignment:
    """Shard ``shard`` is owned by ``node``; ``token`` is the revision that
    created the key: it fences the owner's saves."""

    shard: int
    node: str
    address: str
    lease: int
    token: int

    @staticmethod
    def value(node: str, address: str) -> bytes:
        return encode({"node": node, "address": address})

    @classmethod
    def from_kv(cls, shard: int, kv: KeyValue) -> Assignment:
        raw = decode(kv.value)
        return cls(
            shard, str(raw.get("node", "")), str(raw.get("address", "")), kv.lease, kv.mod_revision
        )


@dataclass(frozen=True, slots=True)
class Handoff:
    """The leader asked ``source`` to hand shard ``shard`` over (to
    ``target`` when it has a preference); ``released`` once it did."""

    shard: int
    source: str
    target: str
    released: bool

    def to_bytes(self) -> bytes:
        return encode({"from": self.source, "to": self.target, "released": self.released})

    @classmethod
    def from_kv(cls, shard: int, kv: KeyValue) -> Handoff:
        raw = decode(kv.value)
        return cls(
            shard, str(raw.get("from", "")), str(raw.get("to", "")), bool(raw.get("released"))
        )


@dataclass(frozen=True, slots=True)
class Rebalance:
    """The last placement round of a type that changed anything."""

    at: float
    leader: str
    assigned: int
    moved: int

    def to_bytes(self) -> bytes:
        return encode(
            {"at": self.at, "leader": self.leader, "assigned": self.assigned, "moved": self.moved}
        )

    @classmethod
    def from_kv(cls, kv: KeyValue) -> Rebalance:
        raw = decode(kv.value)
        return cls(
            float(raw.get("at", 0.0)),
            str(raw.get("leader", "")),
            int(raw.get("assigned", 0)),
            int(raw.get("moved", 0)),
        )
