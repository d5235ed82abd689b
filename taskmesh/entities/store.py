"""The `StateStore` protocol: where persistent entities keep their state.

A store holds one msgpack-encoded value per entity, fenced by shard: every
write carries the fencing token of the activation that makes it (the
revision of its shard's assignment), and the store refuses a write whose
token is not the shard's current one, raising :class:`StaleActivation`.
So an owner that lost its shard (it froze, its lease expired, the shard
moved) cannot overwrite what the new owner saw or wrote.

The runtime calls a store from a small pool of worker threads (never the
event loop): every method may block on I/O. Two implementations ship:
:class:`~taskmesh.entities.etcd_store.EtcdStore` (the default) and
:class:`~taskmesh.entities.postgres_store.PostgresStore` (the ``postgres``
extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import msgpack

from taskmesh.errors import InvalidMessage, StateTooLarge

if TYPE_CHECKING:
    from taskmesh.cluster.etcd import EtcdClient
    from taskmesh.entities.layout import EntityKeys

__all__ = ["StateStore", "StoreContext", "decode_state", "encode_state"]


@dataclass(frozen=True, slots=True)
class StoreContext:
    """What a node gives its store when it binds it: the cluster's name
    (stores keep clusters apart), the node's etcd client and the key layout
    (the etcd store fences on the assignment keys)."""

    cluster: str
    etcd: EtcdClient
    keys: EntityKeys


class StateStore(Protocol):
    """Durable state of persistent entities; see the module docstring.

    ``max_state_size`` bounds one encoded state (bytes).
    """

    max_state_size: int

    def bind(self, context: StoreContext) -> None:
        """Attach to a node (called once, by ``node.host``, before any other call)."""
        ...

    def acquire(self, entity_type: str, shard: int, token: int) -> None:
        """Fence ``shard`` with ``token`` before its new owner loads any state:
        from then on only saves with ``token`` succeed. Raises
        :class:`StaleActivation` if a newer token holds it already."""
        ...

    def load(self, entity_type: str, entity_id: str) -> bytes | None:
        """The entity's encoded state, or None if it has none."""
        ...

    def save(
        self, entity_type: str, shard: int, entity_id: str, data: bytes | None, token: int
    ) -> None:
        """Write (``data`` None: delete) the entity's state if ``token`` still
        fences its shard; else raise :class:`StaleActivation`."""
        ...

    def close(self) -> None:
        """Release connections (idempotent)."""
        ...


def encode_state(state: Any, limit: int) -> bytes | None:
    """``state`` as stored: msgpack bytes, or None for a None state (deleted).
    Raises :class:`InvalidMessage` or :class:`StateTooLarge`."""
    if state is None:
        return None
    try:
        data: bytes = msgpack.packb(state, use_bin_type=True, datetime=False)
    except (TypeError, ValueError, OverflowError) as error:
        raise InvalidMessage(f"an entity's state must be a msgpack value: {error}") from None
    if len(data) > limit:
        raise StateTooLarge(
            f"the entity's state is {len(data)} bytes encoded; its store takes {limit} at most"
        )
    return data


def decode_state(data: bytes | None) -> Any:
    """A stored state as a fresh value (None when there is none)."""
    if data is None:
        return None
    return msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=_no_ext)


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} in an entity state")
