"""`EntityRef`: reaches one entity by type and id, wherever (and whether) it runs.

``node.entity("device", "dock-3")`` and ``client.entity(...)`` make one; it
is cheap (two strings) and resolves the owner at every send, so it follows
the entity across moves. Methods run in the caller's thread.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from taskmesh.actors.future import Reply
from taskmesh.errors import ActorNotFound, AskTimeout, ConfigError, PeerUnreachable

if TYPE_CHECKING:
    from taskmesh.entities.service import Entities

__all__ = ["EntityRef"]

_RETRY_FIRST = 0.05
_RETRY_MAX = 1.0
_LIVENESS_CHECK = 0.1


class EntityRef:
    """The entity ``entity_id`` of type ``entity_type``; see the module docstring."""

    __slots__ = ("_entities", "_lane", "_owner", "_remote", "_shard", "entity_id", "entity_type")

    def __init__(self, entities: Entities, entity_type: str, entity_id: str) -> None:
        self._entities = entities
        self.entity_type = entity_type
        self.entity_id = entity_id
        # Routing state the router keeps here (any thread: each write is whole).
        self._lane: Any = None
        self._shard = 0
        self._owner: Any = None
        self._remote: Any = None

    def __repr__(self) -> str:
        return f"<EntityRef {self.entity_type!r} {self.entity_id!r}>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, EntityRef)
            and other.entity_type == self.entity_type
            and other.entity_id == self.entity_id
        )

    def __hash__(self) -> int:
        return hash((self.entity_type, self.entity_id))

    def tell(self, message: Any, *, block: bool = True) -> None:
        """Send ``message`` at most once; activates the entity if needed.

        While its shard moves the message waits (in order) for the new
        owner. A full mailbox on this node blocks like an actor's (within
        ``send_timeout``; ``block=False`` sheds at once). An unknown type,
        or a shard that finds no owner in time, makes a dead letter.
        """
        remote = self._remote
        if remote is not None:
            # The fast path (see EntityRouter.tell): the owner this ref sent to
            # last is still the shard's owner, and nothing is held for it.
            lane = self._lane
            shard = self._shard
            owner = self._owner
            with lane.locks[shard]:
                try:
                    if (
                        lane.sent[shard] is owner
                        and lane.view.owners[shard] is owner
                        and shard not in lane.pending
                    ):
                        remote.tell(message)
                        return
                except IndexError:  # the type's shard count changed meanwhile
                    pass
        try:
            self._entities.router.tell(self, message, block=block)
        except ActorNotFound:
            self._entities.dead_letters.record(
                f"{self.entity_type}/{self.entity_id}", message, "actor_not_found"
            )

    async def tell_async(self, message: Any) -> None:
        """``tell`` from a coroutine: waits for room in a full local mailbox
        without blocking the event loop."""
        try:
            await self._entities.router.tell_async(self, message)
        except ActorNotFound:
            self._entities.dead_letters.record(
                f"{self.entity_type}/{self.entity_id}", message, "actor_not_found"
            )

    def ask_async(
        self, message: Any, *, timeout: float | None = None, idempotency_key: str | None = None
    ) -> Reply:
        """Send and return a :class:`Reply` at once (``await`` it, or
        ``get()``). Raises :class:`ActorNotFound` if no node hosts the type."""
        if timeout is None:
            timeout = self._entities.ask_timeout
        return self._entities.router.ask(
            self, message, timeout=timeout, key=idempotency_key, begin=False
        )[1]

    def ask(
        self,
        message: Any,
        *,
        timeout: float | None = None,
        retries: int = 0,
        idempotency_key: str | None = None,
    ) -> Any:
        """Send and wait for the reply: the entity's return value, or its
        exception (:class:`RemoteError` from another node), or
        :class:`AskTimeout`, :class:`ActorNotFound`, :class:`MailboxFull`,
        :class:`PeerUnreachable`. With ``retries``, an owner lost meanwhile
        (killed, cut off) makes it ask again, at the shard's next owner,
        within ``timeout``; pass an ``idempotency_key`` so that a repeat
        that reaches the same node is not run twice."""
        entities = self._entities
        if timeout is None:
            timeout = entities.ask_timeout
        if retries < 0:
            raise ConfigError(f"retries must be >= 0, got {retries!r}")
        started = time.perf_counter()
        deadline = time.monotonic() + timeout
        lost: set[str] = set()
        tried: list[str] = []
        attempt = 0
        try:
            while True:
                try:
                    return self._ask_once(
                        message, deadline, lost, tried, idempotency_key, watch=retries > 0
                    )
                except AskTimeout:
                    raise AskTimeout(
                        f"no reply from entity {self.entity_type!r} {self.entity_id!r} "
                        f"within {timeout:g} s"
                    ) from None
                except (PeerUnreachable, ActorNotFound) as error:
                    if isinstance(error, PeerUnreachable) and tried and tried[-1]:
                        lost.add(tried[-1])
                    pause = min(_RETRY_FIRST * 2**attempt, _RETRY_MAX)
                    if attempt >= retries or time.monotonic() + pause >= deadline:
                        raise
                    attempt += 1
                    time.sleep(pause)  # backoff before asking the shard's owner again
        finally:
            entities.ask_latency.observe(time.perf_counter() - started)

    def _ask_once(
        self,
        message: Any,
        deadline: float,
        lost: set[str],
        tried: list[str],
        key: str | None,
        *,
        watch: bool,
    ) -> Any:
        """One ask; with ``watch``, give up early (PeerUnreachable) once the
        node it went to is suspected or gone, so the caller can retry."""
        entities = self._entities
        owner = entities.owner_of(self.entity_type, self.entity_id)
        if owner and owner in lost and not entities.router.reachable(owner):
            raise ActorNotFound(f"the owner of entity {self.entity_id!r} ({owner}) is lost")
        tried.append(owner)
        node, reply = entities.router.ask(
            self, message, timeout=max(0.0, deadline - time.monotonic()), key=key, begin=True
        )
        tried[-1] = node
        if not watch:
            return reply.get(max(0.0, deadline - time.monotonic()))
        while True:
            remaining = deadline - time.monotonic()
            try:
                return reply.get(max(0.0, min(remaining, _LIVENESS_CHECK)))
            except AskTimeout:
                if remaining <= _LIVENESS_CHECK:
                    raise
            if node and not entities.router.reachable(node):
                raise PeerUnreachable(f"node {node!r} is suspected or has left the cluster")
            # Held here, or handed on by another node: the shard's owner counts too.
            owner = entities.owner_of(self.entity_type, self.entity_id)
            if owner and owner != node and not entities.router.reachable(owner):
                tried[-1] = owner
                raise PeerUnreachable(f"node {owner!r} is suspected or has left the cluster")
