"""ActorSystem: the local half of a node.

It owns the name table, the root guardian that supervises every top-level
actor, the dead letters, the timer thread, the event loop of its async
actors (started with the first one) and the defaults (mailbox size, ask and
send timeouts, restart intensity). A :class:`~taskmesh.Node` wraps one and
adds the transport and the cluster; it also works alone, in one process.
"""

from __future__ import annotations

import itertools
import logging
import threading
from _thread import get_ident
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from taskmesh.actors.actor import Actor, is_async_actor
from taskmesh.actors.cell import Cell
from taskmesh.actors.deadletters import DeadLetters
from taskmesh.actors.future import ReplyTo
from taskmesh.actors.idempotency import IdempotencyCache
from taskmesh.actors.loop import ActorLoop
from taskmesh.actors.loopcell import LoopCell
from taskmesh.actors.mailbox import REMOTE, TRACED
from taskmesh.actors.names import validate_capability, validate_name
from taskmesh.actors.ref import ActorRef
from taskmesh.actors.supervisor import Backoff, Child, Guardian, Supervisor
from taskmesh.actors.threadcell import ThreadCell
from taskmesh.actors.timers import Scheduler
from taskmesh.actors.traced import Traced, untraced
from taskmesh.errors import ActorNotFound, ConfigError, NameTaken

if TYPE_CHECKING:
    from taskmesh.node import Node

__all__ = ["ActorInfo", "ActorSystem", "NameDirectory"]

log = logging.getLogger("taskmesh.actors")

TreeFailureCallback = Callable[[str, BaseException], None]
FallbackDeliver = Callable[[str, Any, ReplyTo | None, float | None, str | None], bool | None]
"""Takes a message to a name this system does not hold (the node's entities):
True if it took it, False if the name is not its, None if the mailbox it
goes to is full (the transport keeps it and slows its sender down). A
message that came with a trace context comes as a :class:`Traced`."""
FallbackRoom = Callable[[str, Callable[[], None]], bool]
""":meth:`ActorSystem.on_space` for the names a :data:`FallbackDeliver` takes."""


class NameDirectory(Protocol):
    """Where names are published beyond this process (the node's cluster).

    ``claim`` runs in the spawning thread before the actor starts and raises
    :class:`NameTaken` if another node holds the name; ``release`` runs in
    the stopping actor's thread, or on the event loop for an async actor
    with ``wait=False`` (then it must not block: it queues the release, and
    ``settle`` waits for it from another thread). Names starting with ``_``
    (generated ones) are claimed with ``unique=False``: their capabilities
    are published, but they are not cluster-wide names.
    """

    def claim(self, name: str, capabilities: tuple[str, ...], *, unique: bool) -> None: ...

    def release(self, name: str, *, wait: bool = True) -> None: ...

    def settle(self, name: str, timeout: float) -> bool: ...


@dataclass(frozen=True, slots=True)
class ActorInfo:
    """A snapshot of one live actor: its class, ``kind`` (``"thread"`` or
    ``"async"``), ``generation`` (1, plus one per restart), whether its
    first ``on_start`` has run, and how many messages wait in its mailbox."""

    name: str
    actor: str
    kind: str
    generation: int
    started: bool
    mailbox: int


class ActorSystem:
    """Hosts actors in this process.

    ``mailbox_size`` bounds every mailbox unless a spawn says otherwise;
    ``send_timeout`` bounds how long a ``tell`` to a full mailbox waits for
    room before the message is a ``mailbox_full`` dead letter and
    :class:`MailboxFull` is raised; ``ask_timeout`` is the default for ``ask``; ``max_attempts`` how many
    times a message that makes an actor fail is tried before it becomes a
    ``poison`` dead letter (1: never retried); ``idempotency_capacity`` and
    ``idempotency_ttl`` bound the memory of idempotency keys;
    ``max_restarts``/``within``
    and ``backoff`` govern the restarts of top-level actors; ``start_timeout``
    bounds the wait for an ``on_start``; ``stop_timeout`` for each ``on_stop``.
    """

    def __init__(
        self,
        *,
        mailbox_size: int = 10_000,
        ask_timeout: float = 5.0,
        send_timeout: float = 10.0,
        max_restarts: int = 3,
        within: float = 5.0,
        backoff: Backoff | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 10.0,
        dead_letter_log_interval: float = 5.0,
        max_attempts: int = 1,
        idempotency_capacity: int = 10_000,
        idempotency_ttl: float = 300.0,
        directory: NameDirectory | None = None,
    ) -> None:
        if mailbox_size < 1:
            raise ConfigError(f"mailbox_size must be >= 1, got {mailbox_size!r}")
        if ask_timeout <= 0:
            raise ConfigError(f"ask_timeout must be > 0, got {ask_timeout!r}")
        if send_timeout < 0:
            raise ConfigError(f"send_timeout must be >= 0, got {send_timeout!r}")
        if max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1, got {max_attempts!r}")
        self.mailbox_size = mailbox_size
        self.max_attempts = max_attempts
        self.ask_timeout = ask_timeout
        self.send_timeout = send_timeout
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.dead_letters = DeadLetters(log_interval=dead_letter_log_interval)
        self.idempotency = IdempotencyCache(capacity=idempotency_capacity, ttl=idempotency_ttl)
        self.scheduler = Scheduler()
        self._loop = ActorLoop()
        self._cells: dict[str, Cell] = {}
        self._lock = threading.Lock()
        self._anonymous = itertools.count(1)
        self._restarts = 0
        self._tree_failure_callbacks: list[TreeFailureCallback] = []
        self._stopped = False
        self._directory = directory
        self.node: Node | None = None
        """The :class:`~taskmesh.Node` that owns this system, if any."""
        self.fallback_deliver: FallbackDeliver | None = None
        self.fallback_room: FallbackRoom | None = None
        """Called by :meth:`deliver` (I/O thread) for a target that names no
        live actor here, before it counts as not found; True if it took the
        message (a node's sharded entities use it for ``~`` targets). Only
        the miss path pays for it."""
        root = Child(
            Guardian,
            "_guardian",
            "permanent",
            kwargs={
                "on_tree_failure": self._tree_failed,
                "max_restarts": max_restarts,
                "within": within,
                "backoff": backoff,
            },
        )
        self._guardian_cell = ThreadCell(
            self, "_guardian", root, parent=None, capacity=mailbox_size, restart="permanent"
        )
        self._guardian_cell.start()
        self._guardian_cell.when_started().get()
        guardian = self._guardian_cell.instance
        assert isinstance(guardian, Guardian)
        self._guardian = guardian

    # --- public API (any thread) ------------------------------------------

    def spawn(
        self,
        actor: type[Actor],
        *args: Any,
        name: str | None = None,
        restart: Literal["permanent", "transient", "temporary"] = "transient",
        mailbox_size: int | None = None,
        max_attempts: int | None = None,
        **kwargs: Any,
    ) -> ActorRef:
        """Start a top-level actor and return a ref to it.

        ``args``/``kwargs`` go to the actor's constructor (again at every
        restart). ``name`` must be unique (:class:`NameTaken` otherwise); one
        is generated when omitted. Top-level actors are ``transient`` by
        default: restarted after a failure, not after a normal stop.

        Returns once the actor is registered and its ``on_start`` is
        scheduled, without waiting for ``on_start``: messages sent meanwhile
        wait in its mailbox. A failing ``on_start`` is reported to the
        supervisor (the root, for a top-level actor), which restarts the
        actor like after a failure in ``receive``; the caller is not told.
        A :class:`Supervisor` is the exception: its spawn returns once its
        children have started, in order, so that their names resolve.
        """
        if self._stopped:
            raise ConfigError("this actor system is stopped")
        spec = Child(
            actor, name, restart, args, kwargs, mailbox_size, self.stop_timeout, max_attempts
        )
        cell = self._guardian.start_child(spec, wait=issubclass(actor, Supervisor))
        return cell.ref

    def ref(self, name: str) -> ActorRef:
        """A ref to the live actor ``name``; :class:`ActorNotFound` if none."""
        cell = self._cells.get(name)
        if cell is None or not cell.alive:
            raise ActorNotFound(f"no actor named {name!r}")
        return cell.ref

    def local(self, name: str) -> ActorRef | None:
        """A ref to the live actor ``name`` in this system, or None (any thread)."""
        cell = self._cells.get(name)
        if cell is None or not cell.alive:
            return None
        return cell.ref

    def stop_actor(self, name: str, timeout: float | None = None) -> bool:
        """Stop the actor ``name`` for good, whatever its restart type (a
        supervisor does not restart it), and wait up to ``timeout`` seconds
        (default ``stop_timeout``; 0 does not wait). The stop overtakes the
        messages queued for it, which become dead letters. Returns whether
        it had ended by then; True if no such actor lives. Any thread but
        the event loop's (there, pass 0)."""
        cell = self._cells.get(name)
        if cell is None:
            return True
        wait = self.stop_timeout if timeout is None else timeout
        ended = cell.stop_and_wait(wait)
        if ended and wait > 0:
            self.settle(cell, wait)
        return ended

    def settle(self, cell: Cell, timeout: float) -> None:
        """After ``cell`` ended: wait up to ``timeout`` s until its name is
        free in the cluster too (an async actor's is released in the
        background). Not on the event loop, where it returns at once."""
        directory = self._directory
        if (
            directory is not None
            and isinstance(cell, LoopCell)
            and get_ident() != self._loop.thread_id
        ):
            directory.settle(cell.name, timeout)

    def info(self, name: str) -> ActorInfo | None:
        """What is known about the live actor ``name`` now, or None (any thread)."""
        cell = self._cells.get(name)
        if cell is None or not cell.alive:
            return None
        return ActorInfo(
            name=name,
            actor=cell.spec.actor.__name__,
            kind="async" if isinstance(cell, LoopCell) else "thread",
            generation=cell.generation,
            started=cell.is_started(),
            mailbox=cell.mailbox.qsize(),
        )

    def queued(self) -> int:
        """User messages queued in all mailboxes (any thread)."""
        return sum(cell.mailbox.qsize() for cell in list(self._cells.values()) if cell.alive)

    def names(self) -> list[str]:
        """The names of the live actors, sorted."""
        return sorted(name for name, cell in list(self._cells.items()) if cell.alive)

    def deliver(
        self,
        name: str,
        message: Any,
        reply: ReplyTo | None,
        deadline: float | None,
        idempotency_key: str | None = None,
    ) -> bool | None:
        """Queue a message that arrived from elsewhere; runs on the transport's
        I/O thread, the only caller (an inline actor's counters rely on it).

        Never blocks, except that an idle inline actor handles the message
        here and now (:attr:`Actor.inline`). Returns False, having taken
        nothing, when the mailbox is full: the transport keeps the message
        and slows its sender down until :meth:`on_space` says there is room
        (see :mod:`taskmesh.transport.flow`). For an ask (``reply`` set) to
        no such actor raises :class:`ActorNotFound`; such a tell becomes a
        dead letter. An ask with an ``idempotency_key`` seen recently for
        this actor is answered from memory (see
        :mod:`taskmesh.actors.idempotency`).
        """
        cell = self._cells.get(name)
        if cell is None or not cell.alive:
            return self._not_here(name, message, reply, deadline, idempotency_key)
        mailbox = cell.mailbox
        if mailbox.qsize() >= mailbox.capacity:
            return False  # the transport keeps it and pushes back on its sender
        if idempotency_key is not None and reply is not None:
            reply = self.idempotency.admit(name, idempotency_key, reply)
            if reply is None:
                return None  # a repeat: answered from memory, or waits for the first
        if cell.inline:
            inline = cast(ThreadCell, cell)
            if inline.try_inline(message, reply, deadline):
                return None
            inline.io_queued += 1
            mailbox.put((REMOTE, message, reply, deadline))
        else:
            mailbox.put((0, message, reply, deadline))
        if not cell.alive:  # raced the actor's end (mypy assumes it cannot change)
            cell.drain_dead()  # type: ignore[unreachable]
        return None

    def deliver_traced(
        self,
        name: str,
        traced: Traced,
        reply: ReplyTo | None,
        deadline: float | None,
        idempotency_key: str | None = None,
    ) -> bool | None:
        """:meth:`deliver` for a message that came with a trace context
        (I/O thread): queued as ``TRACED``, so the actor handles it inside
        its span (:mod:`taskmesh.actors.traced`); an idle inline actor runs
        it here and now, inside its span too, as it would an untraced one."""
        cell = self._cells.get(name)
        if cell is None or not cell.alive:
            return self._not_here(name, traced, reply, deadline, idempotency_key)
        mailbox = cell.mailbox
        if mailbox.qsize() >= mailbox.capacity:
            return False
        if idempotency_key is not None and reply is not None:
            reply = self.idempotency.admit(name, idempotency_key, reply)
            if reply is None:
                return None
        if cell.inline:
            inline = cast(ThreadCell, cell)
            if inline.try_inline(traced.message, reply, deadline, traced):
                return None
            inline.io_queued += 1
        mailbox.put((TRACED, traced, reply, deadline))
        if not cell.alive:
            cell.drain_dead()  # type: ignore[unreachable]
        return None

    def _not_here(
        self,
        name: str,
        message: Any,
        reply: ReplyTo | None,
        deadline: float | None,
        idempotency_key: str | None,
    ) -> bool | None:
        """:meth:`deliver` (and :meth:`deliver_traced`, with a
        :class:`Traced` message) for a name no live actor here holds: the
        fallback's (the node's entities) if it takes it, else not found."""
        fallback = self.fallback_deliver
        if fallback is not None:
            taken = fallback(name, message, reply, deadline, idempotency_key)
            if taken is None:
                return False  # full: the transport keeps it, as for a mailbox
            if taken:
                return None
        if reply is not None:
            raise ActorNotFound(f"no actor named {name!r}")
        self.dead_letters.record(name, untraced(message), "actor_not_found")
        return None

    def on_space(self, name: str, callback: Callable[[], None]) -> bool:
        """Call ``callback()`` once the mailbox of ``name`` has drained to
        half its capacity (see :meth:`Mailbox.on_space`): on the actor's
        thread or the event loop, so it must be short and never block.
        Returns False, registering nothing, when there is room already or
        no such actor lives (any thread; for the transport's flow control)."""
        cell = self._cells.get(name)
        if cell is None or not cell.alive:
            room = self.fallback_room
            return room is not None and room(name, callback)
        return cell.mailbox.on_space(callback)

    def message_counts(self) -> dict[str, int]:
        """User messages each live actor has taken so far (any thread; for
        metrics: the count is kept by the actor's own thread)."""
        return {name: cell.received for name, cell in list(self._cells.items()) if cell.alive}

    def mailbox_depths(self) -> dict[str, int]:
        """Queued user messages per live actor."""
        return {
            name: cell.mailbox.qsize() for name, cell in list(self._cells.items()) if cell.alive
        }

    @property
    def restart_count(self) -> int:
        """How many restarts supervisors have ordered in this system."""
        return self._restarts

    def on_tree_failure(self, callback: TreeFailureCallback) -> None:
        """Call ``callback(name, error)`` when a top-level tree is stopped
        because it failed beyond its restart intensity. Runs in the root
        guardian's thread; keep it short."""
        self._tree_failure_callbacks.append(callback)

    def stop(self) -> None:
        """Stop every actor, top-level ones in reverse start order, each tree
        from its leaves up; then the timer thread. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._guardian_cell.stop_and_wait(self.stop_timeout * 2)
        self.scheduler.stop()
        self._loop.stop(self.stop_timeout)

    def __enter__(self) -> ActorSystem:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- runtime internals ------------------------------------------------

    def _new_cell(self, spec: Child, *, parent: Cell) -> Cell:
        """Create and register (but not start) a cell for ``spec``: a
        thread of its own, or the event loop for an async actor (any thread)."""
        actor, name, capacity = spec.actor, spec.name, spec.mailbox_size
        if name is None:
            name = f"_{actor.__name__.lower()}-{next(self._anonymous)}"
        validate_name(name)
        declared: object = actor.capabilities
        if isinstance(declared, str):
            raise ConfigError(
                f"{actor.__name__}.capabilities must be a tuple of strings, not a string "
                "(a missing comma: use ('echo',))"
            )
        for capability in actor.capabilities:
            validate_capability(capability)
        if capacity is not None and capacity < 1:
            raise ConfigError(f"mailbox_size must be >= 1, got {capacity!r}")
        cell: Cell
        if is_async_actor(actor):
            cell = LoopCell(
                self,
                name,
                spec,
                parent=parent,
                capacity=capacity or self.mailbox_size,
                restart=spec.restart,
                max_attempts=spec.max_attempts or self.max_attempts,
                loop=self._loop,
            )
        else:
            cell = ThreadCell(
                self,
                name,
                spec,
                parent=parent,
                capacity=capacity or self.mailbox_size,
                restart=spec.restart,
                max_attempts=spec.max_attempts or self.max_attempts,
                inline=bool(actor.inline),
            )
        with self._lock:
            held = self._cells.get(name)
            if held is not None and held.alive:
                raise NameTaken(f"the name {name!r} is taken by a live actor")
            self._cells[name] = cell
        if self._directory is not None:
            try:
                self._directory.claim(
                    name, tuple(actor.capabilities), unique=not name.startswith("_")
                )
            except BaseException:
                self._unregister(cell, release=False)
                raise
        return cell

    def _unregister(self, cell: Cell, *, release: bool = True) -> None:
        directory = self._directory if release else None
        if directory is not None and isinstance(cell, LoopCell):
            # On the event loop, which must not wait for etcd: queued, and
            # queued before the name is free here, so that a spawn of the
            # same name waits for the release instead of racing it.
            if self._cells.get(cell.name) is cell:
                try:
                    directory.release(cell.name, wait=False)
                except Exception:
                    log.warning("could not release the name %r", cell.name, exc_info=True)
            directory = None
        with self._lock:
            if self._cells.get(cell.name) is not cell:
                return
            del self._cells[cell.name]
        if directory is not None:
            try:
                directory.release(cell.name)
            except Exception:  # the lease expiry will remove it anyway
                log.warning("could not release the name %r", cell.name, exc_info=True)

    def _count_restart(self) -> None:
        with self._lock:
            self._restarts += 1

    def _tree_failed(self, name: str, error: BaseException) -> None:
        for callback in list(self._tree_failure_callbacks):
            try:
                callback(name, error)
            except Exception:
                log.exception("tree-failure callback %r failed", callback)
