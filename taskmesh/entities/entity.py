"""`Entity`: the base class of sharded entities ("virtual actors").

An entity is addressed by its type and an id (``node.entity("device",
"dock-3")``), never spawned: the first message to an id activates it on the
node that owns the id's shard, and it passivates again after
``idle_timeout`` seconds without messages. Entities run as light actors on
the node's event loop (about 1 KiB each while active, no thread), one
message at a time by default.

Lifecycle of one activation (every box runs on the node's event loop)::

    load state (persistent) -> on_activate -> receive ... -> on_passivate
                                   | failure in receive or on_activate
                                   v
                 fresh instance, state loaded again -> on_activate (after a backoff)

``receive`` may be ``async def`` (it may await; other entities run
meanwhile) or a plain ``def``: a plain one runs on the event loop too, so it
must be short and must not block (no sleeps, no sync I/O, no sync asks).
``on_activate`` and ``on_passivate`` may be either kind as well.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Generator
from typing import TYPE_CHECKING, Any, ClassVar

from taskmesh.actors.actor import Actor
from taskmesh.entities.shards import DEFAULT_SHARDS, validate_entity_type, validate_shards
from taskmesh.errors import ConfigError

if TYPE_CHECKING:
    from taskmesh.entities.cell import EntityCell
    from taskmesh.entities.ref import EntityRef

__all__ = ["Entity", "Saved", "check_entity_class"]

_HOOKS_FOR_RUNTIME = ("on_start", "on_stop")


class Saved:
    """What ``save()`` returns: ``await`` it to wait until the state is
    stored (it raises if the store refused). Not awaiting it is fine too:
    the runtime waits for every save of a message before the ask's answer
    goes out and before the next message."""

    __slots__ = ("_future",)

    def __init__(self, future: Awaitable[None]) -> None:
        self._future = future

    def __await__(self) -> Generator[Any, None, None]:
        return self._future.__await__()


class Entity(Actor):
    """Subclass it, set ``entity_type`` and write ``receive``; then host it
    on the nodes that should run it with ``node.host(MyEntity)``.

    Class attributes:

    - ``entity_type``: the type's name, as senders spell it (required);
    - ``idle_timeout``: seconds without a message before the entity is
      passivated (``None``: never); timers do not count as messages;
    - ``persistent``: ``True`` gives each entity ``self.state`` (a msgpack
      value), loaded before ``on_activate`` and stored by ``self.save()``;
    - ``shards``: how many shards the type's ids are spread over (128; the
      same on every node, and fixed for the type's life).

    In a handler, ``self.entity_id`` is the id; ``self.state`` the state;
    ``self.node.entity(...)`` reaches other entities, ``self.node.ref(...)``
    named actors. ``self.stop()`` passivates the entity after this message.
    """

    entity_type: ClassVar[str] = ""
    idle_timeout: ClassVar[float | None] = 120.0
    persistent: ClassVar[bool] = False
    shards: ClassVar[int] = DEFAULT_SHARDS

    state: Any = None
    """The entity's state (persistent types): loaded before ``on_activate``;
    ``initial_state()`` when none was stored yet. Store it with ``save()``."""

    def _entity_cell(self) -> EntityCell:
        from taskmesh.entities.cell import EntityCell

        cell = self._context()
        if not isinstance(cell, EntityCell):
            raise ConfigError(
                f"{type(self).__name__} is an Entity: host it with node.host(...) and reach it "
                "with node.entity(type, id); it cannot be spawned"
            )
        return cell

    @property
    def entity_id(self) -> str:
        """This entity's id."""
        return self._entity_cell().entity_id

    @property
    def ref(self) -> EntityRef:  # type: ignore[override]  # an entity is reached by id
        """A ref to this entity by type and id (it follows the entity when it moves)."""
        cell = self._entity_cell()
        return cell.host.entities.ref(cell.host.entity_type, cell.entity_id)

    def initial_state(self) -> Any:
        """The state of an entity that has none stored yet (a persistent
        type's first activation, or after it saved ``None``). Default ``None``."""
        return None

    def save(self) -> Saved:
        """Store ``self.state`` (persistent types). The state is encoded now
        (later changes are not part of this save) and written in the
        background, fenced by this activation's token; saves of one entity
        land in order, and a burst of them is written once. Raises
        :class:`InvalidMessage` or :class:`StateTooLarge` at once; a store
        that refuses (:class:`StaleActivation`) or fails raises when the
        save is awaited, or makes the current message fail."""
        return self._entity_cell().save(self.state)

    def on_activate(self) -> Any:
        """Runs on the event loop when the entity is activated, after its
        state is loaded and before its first message; may be ``async
        def``. A failure here counts as a failure of the activation."""

    def on_passivate(self) -> Any:
        """Runs on the event loop when the entity is passivated (idle, its
        shard moves, the node drains); may be ``async def`` and may
        ``save()``. Not run when the node lost its lease (the activation is
        dropped as after a crash) nor before a restart after a failure."""

    # --- runtime hooks: entities use on_activate / on_passivate ----------------

    def on_start(self) -> Any:
        """Runtime hook: hands over to :meth:`on_activate` (do not override)."""
        return self._entity_cell().activated(self)

    def on_stop(self) -> Any:
        """Runtime hook: hands over to :meth:`on_passivate` (do not override)."""
        return self._entity_cell().passivated(self)


def check_entity_class(entity_cls: object) -> None:
    """Refuse what cannot be hosted, with a clear error."""
    if not (isinstance(entity_cls, type) and issubclass(entity_cls, Entity)):
        raise ConfigError(f"node.host needs a taskmesh.Entity subclass, got {entity_cls!r}")
    name = entity_cls.__name__
    if not entity_cls.entity_type:
        raise ConfigError(f"{name}.entity_type is not set (e.g. entity_type = 'device')")
    validate_entity_type(entity_cls.entity_type)
    validate_shards(entity_cls.shards, f"{name}.shards")
    timeout = entity_cls.idle_timeout
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ConfigError(f"{name}.idle_timeout must be > 0 seconds or None, got {timeout!r}")
    if entity_cls.capabilities:
        raise ConfigError(f"{name}: entities are reached by id, not by capability")
    if entity_cls.inline:
        raise ConfigError(f"{name}: entities run on the event loop; inline is for threaded actors")
    for hook in _HOOKS_FOR_RUNTIME:
        if getattr(entity_cls, hook) is not getattr(Entity, hook):
            raise ConfigError(f"{name} overrides {hook}: use on_activate and on_passivate")
    if entity_cls.receive is Entity.receive:
        raise ConfigError(f"{name} has no receive")
    limit = entity_cls.max_concurrency
    if not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"{name}.max_concurrency must be an int >= 1")
    if limit > 1 and not inspect.iscoroutinefunction(entity_cls.receive):
        raise ConfigError(f"{name}: max_concurrency > 1 needs an async receive")
