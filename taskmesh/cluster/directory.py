"""`Directory`: what the node needs from the cluster layer, as a small Protocol.

The node and the transport depend on this, not on `ClusterMember`, so
tests can pass a fake and another backend could stand in for etcd.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Protocol

from .membership import MemberEvent, MemberInfo
from .names import NameRecord
from .routing import Route, Strategy

__all__ = ["Directory"]


class Directory(Protocol):
    """Cluster-wide names, capability routes and members; reads come from caches."""

    def start(self) -> object:
        """Join the cluster; returns once registered."""
        ...

    def stop(self) -> None:
        """Leave the cluster; this node's names and routes go with it."""
        ...

    def register_actor(
        self,
        name: str,
        *,
        capabilities: Iterable[str] = (),
        address: str | None = None,
        unique: bool = True,
    ) -> NameRecord | None:
        """Claim ``name`` cluster-wide (if ``unique``) and publish its capabilities."""
        ...

    def unregister_actor(self, name: str) -> None:
        """Release ``name`` and withdraw its routes."""
        ...

    def lookup(self, name: str) -> NameRecord | None:
        """The holder of ``name``, or None."""
        ...

    def route(
        self,
        capability: str,
        strategy: Strategy = "round_robin",
        *,
        key: str | None = None,
        exclude: Collection[str] = frozenset(),
    ) -> list[Route]:
        """Actors to send a ``capability`` message to; empty when none is healthy."""
        ...

    def mark_suspect(self, node: str) -> None:
        """Route around ``node`` (it stopped answering heartbeats)."""
        ...

    def clear_suspect(self, node: str) -> None:
        """Route to ``node`` again."""
        ...

    def members(self) -> dict[str, MemberInfo]:
        """Live members by node id."""
        ...

    def on_member_event(self, listener: Callable[[MemberEvent], None]) -> None:
        """Be told of joins, leaves and updates."""
        ...

    @property
    def is_leader(self) -> bool:
        """Whether this node leads the cluster now."""
        ...
