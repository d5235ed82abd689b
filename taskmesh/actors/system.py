"""ActorSystem: the local half of a node.

It owns the name table, the root guardian that supervises every top-level
actor, the dead letters, the timer thread and the defaults (mailbox size,
ask timeout, restart intensity). A :class:`~taskmesh.Node` wraps one and
adds the transport and the cluster; it also works alone, in one process.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any, Literal

from taskmesh.actors.actor import Actor
from taskmesh.actors.cell import Cell
from taskmesh.actors.deadletters import DeadLetters
from taskmesh.actors.future import ReplyTo
from taskmesh.actors.names import validate_name
from taskmesh.actors.ref import ActorRef
from taskmesh.actors.supervisor import Backoff, Child, Guardian
from taskmesh.actors.timers import Scheduler
from taskmesh.errors import ActorNotFound, ConfigError, MailboxFull, NameTaken

__all__ = ["ActorSystem"]

log = logging.getLogger("taskmesh.actors")

TreeFailureCallback = Callable[[str, BaseException], None]


class ActorSystem:
    """Hosts actors in this process.

    ``mailbox_size`` bounds every mailbox unless a spawn says otherwise;
    ``ask_timeout`` is the default for ``ask``; ``max_restarts``/``within``
    and ``backoff`` govern the restarts of top-level actors; ``start_timeout``
    bounds the wait for an ``on_start``; ``stop_timeout`` for each ``on_stop``.
    """

    def __init__(
        self,
        *,
        mailbox_size: int = 10_000,
        ask_timeout: float = 5.0,
        max_restarts: int = 3,
        within: float = 5.0,
        backoff: Backoff | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 10.0,
        dead_letter_log_interval: float = 5.0,
    ) -> None:
        if mailbox_size < 1:
            raise ConfigError(f"mailbox_size must be >= 1, got {mailbox_size!r}")
        if ask_timeout <= 0:
            raise ConfigError(f"ask_timeout must be > 0, got {ask_timeout!r}")
        self.mailbox_size = mailbox_size
        self.ask_timeout = ask_timeout
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.dead_letters = DeadLetters(log_interval=dead_letter_log_interval)
        self.scheduler = Scheduler()
        self._cells: dict[str, Cell] = {}
        self._lock = threading.Lock()
        self._anonymous = itertools.count(1)
        self._restarts = 0
        self._tree_failure_callbacks: list[TreeFailureCallback] = []
        self._stopped = False
        self._guardian_cell = Cell(
            self,
            "_guardian",
            lambda: Guardian(
                on_tree_failure=self._tree_failed,
                max_restarts=max_restarts,
                within=within,
                backoff=backoff,
            ),
            parent=None,
            capacity=mailbox_size,
            restart="permanent",
        )
        self._guardian_cell.start()
        self._guardian_cell.started.wait()
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
        **kwargs: Any,
    ) -> ActorRef:
        """Start a top-level actor and return a ref to it.

        ``args``/``kwargs`` go to the actor's constructor (again at every
        restart). ``name`` must be unique (:class:`NameTaken` otherwise); one
        is generated when omitted. Top-level actors are ``transient`` by
        default: restarted after a failure, not after a normal stop. Returns
        once the actor's ``on_start`` has run.
        """
        if self._stopped:
            raise ConfigError("this actor system is stopped")
        spec = Child(actor, name, restart, args, kwargs, mailbox_size, self.stop_timeout)
        cell = self._guardian.start_child(spec)
        return cell.ref

    def ref(self, name: str) -> ActorRef:
        """A ref to the live actor ``name``; :class:`ActorNotFound` if none."""
        cell = self._cells.get(name)
        if cell is None or not cell.alive:
            raise ActorNotFound(f"no actor named {name!r}")
        return cell.ref

    def names(self) -> list[str]:
        """The names of the live actors, sorted."""
        return sorted(name for name, cell in list(self._cells.items()) if cell.alive)

    def deliver(
        self, name: str, message: Any, reply: ReplyTo | None, deadline: float | None
    ) -> None:
        """Queue a message that arrived from elsewhere (the transport's thread).

        Never blocks. For an ask (``reply`` set) raises :class:`ActorNotFound`
        or :class:`MailboxFull`; a tell that cannot be queued becomes a dead
        letter.
        """
        cell = self._cells.get(name)
        if cell is None or not cell.alive:
            if reply is not None:
                raise ActorNotFound(f"no actor named {name!r}")
            self.dead_letters.record(name, message, "actor_not_found")
            return
        mailbox = cell.mailbox
        if mailbox.qsize() >= mailbox.capacity:
            if reply is not None:
                raise MailboxFull(f"mailbox of {name!r} is full ({mailbox.capacity} messages)")
            self.dead_letters.record(name, message, "mailbox_full")
            return
        mailbox.put((0, message, reply, deadline))
        if not cell.alive:  # raced the actor's end (mypy assumes it cannot change)
            cell.drain_dead()  # type: ignore[unreachable]

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

    def __enter__(self) -> ActorSystem:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- runtime internals ------------------------------------------------

    def _new_cell(
        self,
        factory: Callable[[], Actor],
        name: str | None,
        actor: type[Actor],
        *,
        parent: Cell,
        capacity: int | None,
        restart: str,
    ) -> Cell:
        """Create and register (but not start) a cell (any thread)."""
        if name is None:
            name = f"_{actor.__name__.lower()}-{next(self._anonymous)}"
        validate_name(name)
        if capacity is not None and capacity < 1:
            raise ConfigError(f"mailbox_size must be >= 1, got {capacity!r}")
        cell = Cell(
            self,
            name,
            factory,
            parent=parent,
            capacity=capacity or self.mailbox_size,
            restart=restart,
        )
        with self._lock:
            held = self._cells.get(name)
            if held is not None and held.alive:
                raise NameTaken(f"the name {name!r} is taken by a live actor")
            self._cells[name] = cell
        return cell

    def _unregister(self, cell: Cell) -> None:
        with self._lock:
            if self._cells.get(cell.name) is cell:
                del self._cells[cell.name]

    def _count_restart(self) -> None:
        with self._lock:
            self._restarts += 1

    def _tree_failed(self, name: str, error: BaseException) -> None:
        for callback in list(self._tree_failure_callbacks):
            try:
                callback(name, error)
            except Exception:
                log.exception("tree-failure callback %r failed", callback)
