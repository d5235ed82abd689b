"""Messages the runtime itself sends to actors."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Terminated"]


@dataclass(frozen=True, slots=True)
class Terminated:
    """Delivered to ``receive`` of every watcher when a watched actor stops
    for good (not on a restart, which keeps the actor alive).

    ``reason`` is ``"stopped"`` for a normal stop, ``"failed"`` when a
    supervisor stopped it after a failure, and ``"not_found"`` when the actor
    was already gone at the time of the watch. A watch across nodes
    (``self.watch(self.node.ref(name))``) adds ``"node_left"`` (the actor's
    node left the cluster: it stopped, or its lease expired after it died)
    and ``"unreachable"`` (the mesh suspected its node for too long; see
    ``taskmesh.deathwatch``).
    """

    name: str
    reason: str = "stopped"
