"""The base class users subclass to write actors."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, ClassVar

from taskmesh.errors import ActorError, ConfigError

if TYPE_CHECKING:
    from taskmesh.actors.cell import Cell
    from taskmesh.actors.ref import ActorRef
    from taskmesh.actors.system import ActorSystem
    from taskmesh.actors.timers import Timers
    from taskmesh.addressing import NamedRef
    from taskmesh.node import Node

__all__ = ["Actor", "is_async_actor", "lifecycle_is_sync"]

_HOOKS = ("on_start", "on_stop", "on_restart")


class Actor:
    """An actor: state plus ``receive``, run one message at a time.

    Subclass it and implement :meth:`receive`; its return value answers an
    ``ask``. An exception in ``receive`` goes to the asker (if any) and to
    the supervisor, whose decider resumes, restarts (a fresh instance at the
    same name and address, queued messages kept), stops or escalates.

    Two kinds, chosen by how ``receive`` is written:

    - ``def receive``: a **threaded** actor, with a thread of its own; its
      code may block (sleep, file or socket I/O, sync asks);
    - ``async def receive``: an **async** actor, run on the actor system's
      (the node's) event loop, with no thread of its own; while it awaits,
      other actors run. Its ``on_start``/``on_stop``/``on_restart`` may be
      ``async def`` too. It must not block: use ``await
      ref.ask_async(...)`` and ``await ref.tell_async(...)``.

    Lifecycle of one name (each box runs in the actor's own thread, or on
    the event loop for an async actor)::

        __init__ -> on_start -> receive ... -> on_stop          (stop)
                                   |  failure, decider says restart
                                   v
                 on_stop (old) -> __init__ (new) -> on_restart -> on_start

    The context (``name``, ``ref``, ``system``, ``timers``) is available from
    ``on_start`` on, not in ``__init__``.
    """

    capabilities: ClassVar[tuple[str, ...]] = ()
    """Capabilities this actor advertises in the cluster's routing table."""

    inline: ClassVar[bool] = False
    """Run messages from other nodes on the transport's I/O thread when idle.

    For a ``receive`` that is short and never blocks (no sleeps, no I/O, no
    sync asks). A message that arrives from another node while the actor is
    idle then runs at once on the node's I/O thread instead of waking the
    actor's own thread: two thread hand-offs fewer per remote ask, 1.1-1.25x
    the round trips (``benchmarks/remote.py``). Everything else (local
    messages, timers, a message arriving while the actor is busy,
    supervision) still runs on the actor's thread; one message at a time and
    FIFO per sender hold as usual. A sync ask from such a ``receive`` raises
    :class:`ActorError`; a ``receive`` that is slow delays every message and
    heartbeat of the node (for over a second, and peers suspect it).
    """

    max_concurrency: ClassVar[int] = 1
    """How many ``receive`` calls of an async actor may run at once (each
    awaiting, e.g. I/O). 1, the default, is one message at a time. Above 1,
    messages start in mailbox order but may finish in any order; a restart
    or stop for good cancels the others still running (their asks fail
    with :class:`ActorError`), a normal exit lets them finish."""

    _cell: Cell

    def receive(self, message: Any) -> Any:
        """Handle one message; runs in the actor's own thread (or, written
        as ``async def``, on the event loop).

        The default records the message as an ``unhandled`` dead letter.
        """
        self._context().system.dead_letters.record(
            self._cell.name, message, "unhandled", f"{type(self).__name__} has no receive"
        )
        return None

    def on_start(self) -> None:
        """Runs in the actor's thread (an async actor's: on the event loop,
        and it may be ``async def``) before its first message, on every
        fresh instance (also after a restart, right after ``on_restart``).
        ``spawn`` does not wait for it; a failure here is reported to the
        supervisor like a failure in ``receive``."""

    def on_stop(self) -> None:
        """Runs in the actor's thread (or on the event loop; may be ``async
        def`` there) when this instance ends: at a stop, and on the old
        instance before a restart. Release resources here."""

    def on_restart(self, reason: BaseException | None) -> None:
        """Runs in the actor's thread (or on the event loop; may be ``async
        def`` there) on the fresh instance of a restart,
        before ``on_start``. ``reason`` is the failure that caused it, or
        ``None`` after a normal exit of a permanent child."""

    def _before_stop(self) -> None:
        """Runtime hook before ``on_stop`` (supervisors stop children here)."""

    # --- context, valid from on_start on --------------------------------

    def _context(self) -> Cell:
        try:
            return self._cell
        except AttributeError:
            raise ActorError(
                "the actor context (name, ref, system, timers) is not available in "
                "__init__; use it from on_start on"
            ) from None

    @property
    def name(self) -> str:
        """This actor's name."""
        return self._context().name

    @property
    def ref(self) -> ActorRef:
        """A ref to this actor, to hand to others."""
        return self._context().ref

    @property
    def system(self) -> ActorSystem:
        """The actor system (or node) hosting this actor."""
        return self._context().system

    @property
    def node(self) -> Node:
        """The node hosting this actor: ``self.node.ref(name)`` reaches any
        actor of the cluster. Raises :class:`ActorError` on a bare
        ActorSystem (use ``self.system``)."""
        node = self._context().system.node
        if node is None:
            raise ActorError("this actor runs on a bare ActorSystem, not on a Node")
        return node

    @property
    def timers(self) -> Timers:
        """This actor's timers; they are cancelled when it stops or restarts."""
        return self._context().timers

    def stop(self) -> None:
        """Stop this actor once the current message is handled (a normal
        exit: a ``permanent`` child of a supervisor is restarted)."""
        self._context().request_exit()

    def watch(self, target: ActorRef | NamedRef) -> None:
        """Receive :class:`~taskmesh.Terminated` when ``target`` stops for good.

        ``target`` may be ``self.node.ref(name)`` for an actor on any node:
        Terminated then also comes when that node leaves or is lost, or
        stays unreachable (see ``taskmesh.deathwatch`` for the reasons and
        the bounds).
        """
        target._watch(self._context())

    def unwatch(self, target: ActorRef | NamedRef) -> None:
        """Stop watching ``target``: no Terminated of that watch comes after."""
        target._unwatch(self._context())


_kinds: dict[type[Actor], bool] = {}
_sync_lives: dict[type[Actor], bool] = {}


def is_async_actor(actor: type[Actor]) -> bool:
    """Whether ``actor`` runs on the event loop (its ``receive`` is
    ``async def``); refuses mixed classes with :class:`ConfigError`."""
    kind = _kinds.get(actor)
    if kind is None:
        kind = _kinds[actor] = _is_async_actor(actor)
    return kind


def _is_async_actor(actor: type[Actor]) -> bool:
    if inspect.iscoroutinefunction(actor.receive):
        if actor.inline:
            raise ConfigError(f"{actor.__name__}: inline is for threaded actors, not async ones")
        if not isinstance(actor.max_concurrency, int) or actor.max_concurrency < 1:
            raise ConfigError(f"{actor.__name__}.max_concurrency must be an int >= 1")
        return True
    for hook in _HOOKS:
        if inspect.iscoroutinefunction(getattr(actor, hook)):
            raise ConfigError(
                f"{actor.__name__}.{hook} is async but receive is not: make receive "
                "`async def` too (async hooks run on the event loop)"
            )
    if actor.max_concurrency != 1:
        raise ConfigError(f"{actor.__name__}: max_concurrency is for async actors")
    return False


def lifecycle_is_sync(actor: type[Actor]) -> bool:
    """Whether none of ``actor``'s lifecycle hooks is ``async def``."""
    sync = _sync_lives.get(actor)
    if sync is None:
        hooks = (*_HOOKS, "_before_stop")
        sync = not any(inspect.iscoroutinefunction(getattr(actor, hook)) for hook in hooks)
        _sync_lives[actor] = sync
    return sync
