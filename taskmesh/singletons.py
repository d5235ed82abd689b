"""Cluster singletons as one node sees them: the ones its code declared,
started and stopped here when the leader places them on this node.

Placement (``taskmesh.cluster.placement``) decides where a singleton runs;
this module only runs it. Its two callbacks run on cluster threads (the
placements watch, or the lease thread when the node loses its lease).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskmesh.actors.actor import Actor
    from taskmesh.actors.system import ActorSystem

__all__ = ["Singletons"]

log = logging.getLogger("taskmesh.node")


class Singletons:
    """The singletons declared on one node, by name."""

    def __init__(self, system: ActorSystem) -> None:
        self._system = system
        self._declared: dict[str, tuple[type[Actor], tuple[Any, ...], dict[str, Any]]] = {}

    def declare(
        self, name: str, actor: type[Actor], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """Remember how to start singleton ``name`` if it is placed here."""
        self._declared[name] = (actor, args, kwargs)

    def start(self, name: str, capability: str) -> None:
        """Placement callback (the placements watch thread): run it here."""
        declared = self._declared.get(name)
        if declared is None:
            log.error(
                "singleton %r was placed on this node (label %r) but this node's code does "
                "not declare it; declare it with node.singleton() on every %r node",
                name, capability, capability,
            )  # fmt: skip
            return
        actor, args, kwargs = declared
        try:
            self._system.spawn(actor, *args, name=name, **kwargs)
        except Exception:
            log.exception("could not start singleton %r", name)

    def stop(self, name: str) -> None:
        """Placement callback (watch or lease thread): stop it here, now."""
        self._system.stop_actor(name, self._system.stop_timeout)
