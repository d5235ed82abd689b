"""Publishing a node's actors in the cluster: names claimed, capabilities
advertised.

The node's :class:`~taskmesh.actors.system.ActorSystem` calls the
:class:`Registrar` as its name directory: ``claim`` in the spawning thread
before an actor starts (it raises :class:`~taskmesh.NameTaken` when another
node holds the name), ``release`` in the stopping actor's thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taskmesh.cluster import ClusterMember

__all__ = ["Registrar"]


class Registrar:
    """The node's name directory; ``member()`` is the node's cluster member,
    or None before the node has joined (then nothing is published)."""

    def __init__(self, member: Callable[[], ClusterMember | None]) -> None:
        self._member = member
        self._claimed: set[str] = set()

    def claimed(self, names: list[str]) -> None:
        """``names`` were just claimed together (``Node.spawn_many``): their
        spawns skip the claim (any thread). Checking each one again costs a
        lookup under the routing lock, which the watch thread holds while it
        applies those very routes: measured, a third of a bulk spawn."""
        self._claimed.update(names)

    def unclaimed(self, names: list[str]) -> None:
        """Forget names :meth:`claimed` kept that will not be spawned."""
        self._claimed.difference_update(names)

    def claim(self, name: str, capabilities: tuple[str, ...], *, unique: bool) -> None:
        if self._claimed and name in self._claimed:
            self._claimed.discard(name)
            return
        member = self._member()
        if member is not None:
            member.register_actor(name, capabilities=capabilities, unique=unique)

    def release(self, name: str) -> None:
        member = self._member()
        if member is not None:
            member.unregister_actor(name)
