"""The cell: the runtime half of an actor, shared by both kinds of actor.

A cell owns one name and one mailbox for its whole life; the user's
:class:`~taskmesh.Actor` instance inside it is replaceable. That is how a
restart keeps the address: refs point at the cell, the supervisor swaps the
instance, and the queued messages stay where they are.

States::

    RUNNING --failure / normal exit--> SUSPENDED (parent told, waits)
    SUSPENDED --RESUME--> RUNNING
    SUSPENDED --RESTART / START_INSTANCE (after backoff)--> RUNNING
    any --STOP--> DEAD (the cell ends)

While suspended the cell handles only system messages; user messages wait
in the mailbox.

Two execution strategies run a cell, behind the few methods it leaves
open (``start``, ``_hook``, ``_ended``):

- :class:`~taskmesh.actors.threadcell.ThreadCell`: a thread of its own (a
  pykka ``ThreadingActor``), for actors whose ``receive`` is a plain
  function and may block;
- :class:`~taskmesh.actors.loopcell.LoopCell`: the actor system's event
  loop, for actors whose ``receive`` is ``async def``; no thread and, while
  idle, no task of its own.

What is shared lives here (what any thread may call, death watch, failure
handling) and in :mod:`taskmesh.actors.lifecycle` (start, stop, restart,
directives: the state machine, written once as coroutines).

Unless a docstring says otherwise, a method runs on the cell's consumer:
its own thread, or the event loop while it handles this cell.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from taskmesh.actors.directives import Action, Directive, Failed
from taskmesh.actors.future import Reply, ReplyTo
from taskmesh.actors.lifecycle import (
    _EXIT,
    DEAD,
    RUNNING,
    SUSPENDED,
    Lifecycle,
    _ExitRequest,
    _not_started,
    _rare,
    run_sync,
)
from taskmesh.actors.mailbox import STOP, TIMER, WAKE, Envelope, LoopMailbox, Mailbox
from taskmesh.actors.messages import Terminated
from taskmesh.actors.timers import Timers
from taskmesh.actors.traced import untraced
from taskmesh.errors import ActorNotFound, AskTimeout

if TYPE_CHECKING:
    from taskmesh.actors.actor import Actor
    from taskmesh.actors.ref import ActorRef
    from taskmesh.actors.supervisor import Child
    from taskmesh.actors.system import ActorSystem

__all__ = ["DEAD", "RUNNING", "SUSPENDED", "Cell", "run_sync"]

log = logging.getLogger("taskmesh.actors")

_monotonic = time.monotonic


class Cell(Lifecycle):
    """Runs one actor; made by :class:`~taskmesh.actors.system.ActorSystem`."""

    __slots__ = ()  # the fields are declared in Lifecycle

    mailbox: Mailbox | LoopMailbox

    def __init__(
        self,
        system: ActorSystem,
        name: str,
        spec: Child,
        *,
        parent: Cell | None,
        restart: str,
        max_attempts: int = 1,
    ) -> None:
        self.system = system
        self.name = name
        self.spec = spec
        self.parent = parent
        self.restart = restart
        self.max_attempts = max_attempts
        self.alive = True
        self.ended = False
        self.generation = 0
        self.received = 0  # user messages taken, for metrics (one writer at a time)
        self.instance: Actor | None = None
        self.thread_id = -1  # a threaded actor's own thread, once it runs
        self.inline = False
        self.waiting_for: Cell | None = None  # whose mailbox this actor waits for room in
        self._receive: Callable[[Any], Any] = _not_started
        self._state = RUNNING
        self._resume_at: float | None = None
        self._pending: Directive | None = None
        self._stop_ack: Reply | None = None
        self._terminated_reason = "stopped"
        self._watchers: set[Cell] | None = None
        self._ref: ActorRef | None = None
        self._exit_waiters: list[ReplyTo] | None = None
        self._retry: tuple[Any, ReplyTo | None, float | None, int] | None = None
        self._needs_fresh = False
        self._timers: Timers | None = None
        self._started = False
        self._start_waiters: list[Reply] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} gen={self.generation} {self._state.name}>"

    # --- what the execution strategies provide ------------------------------

    def start(self) -> None:
        """Begin running: schedule the first instance's start (caller's thread)."""
        raise NotImplementedError

    # --- any thread -----------------------------------------------------------

    @property
    def ref(self) -> ActorRef:
        """A ref bound to this cell's name (any thread)."""
        if self._ref is None:
            from taskmesh.actors.ref import ActorRef

            self._ref = ActorRef(self.system, self.name, self)
        return self._ref

    @property
    def max_concurrency(self) -> int:
        """How many messages this actor may handle at once."""
        return 1

    @property
    def timers(self) -> Timers:
        """This actor's timers, made on first use (the actor's own code)."""
        if self._timers is None:
            self._timers = Timers(self)
        return self._timers

    def is_started(self) -> bool:
        """Whether the first instance's start (``on_start``) has run (any thread)."""
        return self._started

    def when_started(self) -> Reply:
        """A reply set once the first ``on_start`` has run, or failed (any thread)."""
        reply = Reply()
        with _rare:
            if not self._started:
                if self._start_waiters is None:
                    self._start_waiters = []
                self._start_waiters.append(reply)
                return reply
        reply.set(None)
        return reply

    def post(self, directive: Directive | Failed | _ExitRequest) -> None:
        """Send a system message to this cell (any thread)."""
        self.mailbox.post_system(directive)
        if self.ended:
            self._ack_leftovers()

    def stop_and_wait(self, timeout: float, reason: str = "stopped") -> bool:
        """Stop this cell for good and wait up to ``timeout`` s (0: do not
        wait; any thread but this cell's own consumer). Returns whether it
        ended in time."""
        if self.ended:
            return True
        ack = Reply()
        self.post(Directive(Action.STOP, ack=ack, terminated_reason=reason))
        if timeout <= 0:
            return self.ended
        try:
            ack.get(timeout)
        except AskTimeout:
            log.warning("actor %r did not stop within %.1f s", self.name, timeout)
            return False
        return True

    def drain_dead(self) -> None:
        """Turn queued messages of a dead cell into dead letters and failed
        asks, and release blocked senders. Idempotent; any thread (senders
        call it when they raced the cell's end)."""
        dead_letters = self.system.dead_letters
        queued = self._held()
        queued.extend(self.mailbox.drain())
        for kind, message, reply, _ in queued:
            if kind == WAKE:
                continue
            if kind == STOP:
                if reply is not None:
                    reply.set(True)
                continue
            if kind == TIMER:
                message = message[2]
            message = untraced(message)
            if reply is not None:
                reply.fail(
                    ActorNotFound(f"actor {self.name!r} stopped before handling the message")
                )
            else:
                dead_letters.record(self.name, message, "actor_stopped")

    def _held(self) -> list[Envelope]:
        """Messages taken from the mailbox but not handled (a retry)."""
        retry, self._retry = self._retry, None
        return [] if retry is None else [(0, retry[0], retry[1], retry[2])]

    def add_watcher(self, watcher: Cell) -> None:
        """Make ``watcher`` receive Terminated when this cell ends (any thread)."""
        with _rare:
            if self.alive:
                if self._watchers is None:
                    self._watchers = set()
                self._watchers.add(watcher)
                return
        watcher.deliver_internal(Terminated(self.name, "not_found"))

    def remove_watcher(self, watcher: Cell) -> None:
        """Undo :meth:`add_watcher` (any thread)."""
        with _rare:
            if self._watchers is not None:
                self._watchers.discard(watcher)

    def deliver_internal(self, message: Any) -> None:
        """Queue a runtime-made message (Terminated) past the bound (any thread)."""
        if self.alive:
            self.mailbox.put((0, message, None, None))
            if self.alive:
                return
        self.drain_dead()

    def request_exit(self) -> None:
        """Ask for a normal exit after the current message (the actor's code)."""
        self.post(_EXIT)

    # --- failures -----------------------------------------------------------------

    def _message_failed(
        self,
        message: Any,
        reply: ReplyTo | None,
        deadline: float | None,
        attempt: int,
        error: Exception,
    ) -> None:
        """A message made the actor fail: retry it on the next instance while
        attempts remain, else answer the asker with the error and, if it was
        retried, take it out of the loop as a ``poison`` dead letter."""
        if attempt < self.max_attempts:
            self._retry = (message, reply, deadline, attempt + 1)
        else:
            if reply is not None:
                reply.fail(error)
            if self.max_attempts > 1:
                self.system.dead_letters.record(
                    self.name, untraced(message), "poison",
                    f"{type(error).__name__}: {error} (failed {attempt} times)",
                )  # fmt: skip
        self._fail(error)

    def _expired(self, message: Any, reply: ReplyTo | None) -> None:
        self.system.dead_letters.record(self.name, message, "expired", "deadline passed in mailbox")
        if reply is not None:
            reply.fail(AskTimeout(f"the ask to {self.name!r} expired before it was handled"))

    def _timer_payload(self, message: Any) -> tuple[bool, Any]:
        """Whether a fired timer message is still wanted, and its payload."""
        key, token, payload = message
        timers = self._timers
        return (timers is not None and timers._claim(key, token)), payload

    def _stop_requested(self, reply: ReplyTo | None) -> None:
        """A STOP envelope (``ref.stop()``) reached the head of the mailbox."""
        if reply is not None:
            if self._exit_waiters is None:
                self._exit_waiters = []
            self._exit_waiters.append(reply)
        self._exit()
