"""The base class users subclass to write actors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from taskmesh.errors import ActorError

if TYPE_CHECKING:
    from taskmesh.actors.cell import Cell
    from taskmesh.actors.ref import ActorRef
    from taskmesh.actors.system import ActorSystem
    from taskmesh.actors.timers import Timers
    from taskmesh.node import Node

__all__ = ["Actor"]


class Actor:
    """An actor: state plus ``receive``, run one message at a time.

    Subclass it and implement :meth:`receive`; its return value answers an
    ``ask``. An exception in ``receive`` goes to the asker (if any) and to
    the supervisor, whose decider resumes, restarts (a fresh instance at the
    same name and address, queued messages kept), stops or escalates.

    Lifecycle of one name (each box runs in the actor's own thread)::

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

    _cell: Cell

    def receive(self, message: Any) -> Any:
        """Handle one message; runs in the actor's own thread.

        The default records the message as an ``unhandled`` dead letter.
        """
        self._context().system.dead_letters.record(
            self._cell.name, message, "unhandled", f"{type(self).__name__} has no receive"
        )
        return None

    def on_start(self) -> None:
        """Runs in the actor's thread before its first message, on every
        fresh instance (also after a restart, right after ``on_restart``)."""

    def on_stop(self) -> None:
        """Runs in the actor's thread when this instance ends: at a stop, and
        on the old instance before a restart. Release resources here."""

    def on_restart(self, reason: BaseException | None) -> None:
        """Runs in the actor's thread on the fresh instance of a restart,
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

    def watch(self, target: ActorRef) -> None:
        """Receive :class:`~taskmesh.Terminated` when ``target`` stops for good."""
        target._watch(self._context())

    def unwatch(self, target: ActorRef) -> None:
        """Stop watching ``target``."""
        target._unwatch(self._context())
