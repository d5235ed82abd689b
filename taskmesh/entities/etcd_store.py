"""`EtcdStore`: entity state in the cluster's own etcd (the default store).

Nothing more to run. Each entity's state is one key,
``/taskmesh/<cluster>/entity-state/<type>/<id>``, read once per activation
and written only by ``save()`` (an activation that never saves writes
nothing). A save is one transaction guarded by the shard's assignment key:
it applies only while that key still exists at the revision the activation
was given (its fencing token), so an owner that lost the shard writes
nothing. The fence needs no write of its own: :meth:`acquire` is free.

**Limits.** etcd is a small, replicated configuration store: every write is
fsynced by a quorum, each request is capped (1.5 MiB by default) and the
whole database by its quota (2 GiB by default; past it etcd refuses every
write, leases included). So one state may be at most 1 MiB here
(``max_state_size``), and the whole fleet's state should stay well under
the quota, i.e. around a few hundred MiB: 100,000 entities of 1 KiB is
fine; for more or larger states, or frequent saves, use
:class:`~taskmesh.entities.postgres_store.PostgresStore`.
"""

from __future__ import annotations

from taskmesh.cluster.etcd import Compare, Delete, EtcdClient, Put
from taskmesh.entities.layout import EntityKeys
from taskmesh.entities.store import StoreContext
from taskmesh.errors import ConfigError, StaleActivation

__all__ = ["EtcdStore"]

MAX_STATE_SIZE = 1 << 20
"""1 MiB: under etcd's default request cap of 1.5 MiB, with room for the key."""


class EtcdStore:
    """State in the cluster's etcd; see the module docstring. Thread-safe."""

    def __init__(self, *, max_state_size: int = MAX_STATE_SIZE) -> None:
        if not 0 < max_state_size <= MAX_STATE_SIZE:
            raise ConfigError(
                f"max_state_size must be from 1 to {MAX_STATE_SIZE} bytes for etcd, "
                f"got {max_state_size!r}"
            )
        self.max_state_size = max_state_size
        self._client: EtcdClient | None = None
        self._keys: EntityKeys | None = None

    def bind(self, context: StoreContext) -> None:
        self._client = context.etcd
        self._keys = context.keys

    def _parts(self) -> tuple[EtcdClient, EntityKeys]:
        if self._client is None or self._keys is None:
            raise ConfigError("this EtcdStore is not bound to a node: pass it to node.host()")
        return self._client, self._keys

    def acquire(self, entity_type: str, shard: int, token: int) -> None:
        """Nothing to do: saves compare the assignment key itself."""

    def load(self, entity_type: str, entity_id: str) -> bytes | None:
        client, keys = self._parts()
        kv = client.get(keys.state_of(entity_type, entity_id))
        return kv.value if kv is not None else None

    def save(
        self, entity_type: str, shard: int, entity_id: str, data: bytes | None, token: int
    ) -> None:
        client, keys = self._parts()
        key = keys.state_of(entity_type, entity_id)
        write = Delete(key) if data is None else Put(key, data)
        guard = Compare(keys.shard(entity_type, shard), "mod", "==", token)
        if not client.txn([guard], [write]).succeeded:
            raise StaleActivation(
                f"not saved: shard {shard} of {entity_type!r} is no longer owned under token {token}"
            )

    def close(self) -> None:
        """The etcd client belongs to the node."""

    def __repr__(self) -> str:
        return "EtcdStore()"
