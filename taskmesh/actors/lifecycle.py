"""The lifecycle of a cell, shared by both execution strategies.

An actor instance starts (``on_start``, after ``on_restart`` on a restart),
handles messages, fails or exits (its supervisor decides), and stops
(``on_stop``); directives from the supervisor move the cell between the
states of :mod:`taskmesh.actors.cell`. This state machine is written once,
as coroutines: a :class:`~taskmesh.actors.loopcell.LoopCell` awaits them on
the event loop (so ``async def on_start`` can await), and a
:class:`~taskmesh.actors.threadcell.ThreadCell` steps them to their end
with :func:`run_sync` (its hooks are plain functions, so they never
suspend).

Every method here runs on the cell's consumer: its own thread, or the event
loop while it handles this cell.
"""

from __future__ import annotations

import logging
import time
from _thread import allocate_lock
from collections.abc import Callable, Coroutine
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

from taskmesh.actors.directives import Action, Directive, Failed
from taskmesh.actors.future import Reply, ReplyTo
from taskmesh.actors.messages import Terminated
from taskmesh.errors import ActorNotFound

if TYPE_CHECKING:
    from taskmesh.actors.actor import Actor
    from taskmesh.actors.cell import Cell
    from taskmesh.actors.mailbox import LoopMailbox, Mailbox
    from taskmesh.actors.supervisor import Child
    from taskmesh.actors.system import ActorSystem
    from taskmesh.actors.timers import Timers

__all__ = ["DEAD", "RUNNING", "SUSPENDED", "Lifecycle", "run_sync"]

log = logging.getLogger("taskmesh.actors")

_monotonic = time.monotonic
T = TypeVar("T")

_rare = allocate_lock()
"""Guards the rarely touched, lazily made parts of every cell (watchers,
start waiters): one lock for all costs no memory per actor."""


class _State(Enum):
    RUNNING = 1
    SUSPENDED = 2
    DEAD = 3


RUNNING, SUSPENDED, DEAD = _State.RUNNING, _State.SUSPENDED, _State.DEAD


def run_sync(step: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends to its end, here and now."""
    try:
        step.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    step.close()
    raise RuntimeError("a threaded actor's lifecycle awaited something (make receive async)")


class Lifecycle:
    """The lifecycle half of :class:`~taskmesh.actors.cell.Cell` (its base)."""

    __slots__ = (
        "_exit_waiters",
        "_needs_fresh",
        "_pending",
        "_receive",
        "_ref",
        "_resume_at",
        "_retry",
        "_start_waiters",
        "_started",
        "_state",
        "_stop_ack",
        "_terminated_reason",
        "_timers",
        "_watchers",
        "alive",
        "ended",
        "generation",
        "inline",
        "instance",
        "mailbox",
        "max_attempts",
        "name",
        "parent",
        "received",
        "restart",
        "spec",
        "system",
        "thread_id",
        "waiting_for",
    )

    # Fields, set by Cell.__init__.
    system: ActorSystem
    name: str
    spec: Child
    parent: Cell | None
    mailbox: Mailbox | LoopMailbox
    alive: bool
    ended: bool
    generation: int
    instance: Actor | None
    _receive: Callable[[Any], Any]
    _state: _State
    _resume_at: float | None
    _pending: Directive | None
    _stop_ack: Reply | None
    _terminated_reason: str
    _watchers: set[Cell] | None
    _exit_waiters: list[ReplyTo] | None
    _needs_fresh: bool
    _timers: Timers | None
    _started: bool
    _start_waiters: list[Reply] | None

    async def _hook(self, hook: Callable[..., Any], *args: Any) -> None:
        """Run one lifecycle hook of the instance (the strategy's way)."""
        raise NotImplementedError

    def _ended(self) -> None:
        """The cell has ended (last step of :meth:`_finish`)."""

    def drain_dead(self) -> None:
        raise NotImplementedError

    def _fail(self, error: BaseException) -> None:
        """Report a failure to the parent and suspend until it decides."""
        self._state = SUSPENDED
        if self.parent is None or not self.parent.alive:
            log.error("actor %r failed with no supervisor; stopping it", self.name, exc_info=error)
            self._state = DEAD
            self._terminated_reason = "failed"
            return
        self.parent.post(Failed(self._as_cell(), error, self.generation))

    def _exit(self) -> None:
        """A normal exit: the parent decides (permanent children restart)."""
        if self.parent is None or not self.parent.alive:
            self._state = DEAD
            return
        self._state = SUSPENDED
        self.parent.post(Failed(self._as_cell(), None, self.generation))

    async def _start_instance(self, reason: BaseException | None) -> None:
        self._state = RUNNING
        self.generation += 1
        self._needs_fresh = False
        if self.generation > 1 and self._exit_waiters:
            for waiter in self._exit_waiters:  # a permanent child came back
                waiter.set(False)
            self._exit_waiters.clear()
        try:
            instance = self.spec.new_instance()
            instance._cell = self._as_cell()
            self.instance = instance
            self._receive = instance.receive
            if self.generation > 1:
                await self._hook(instance.on_restart, reason)
            await self._hook(instance.on_start)
        except Exception as exc:
            self._needs_fresh = True
            self._fail(exc)
        if not self._started:
            self._set_started()

    def _set_started(self) -> None:
        with _rare:
            self._started = True
            waiters, self._start_waiters = self._start_waiters, None
        for waiter in waiters or ():
            waiter.set(None)

    async def _stop_instance(self) -> None:
        instance, self.instance = self.instance, None
        self._receive = _not_started
        if self._timers is not None:
            self._timers.cancel_all()
        if instance is None:
            return
        try:
            await self._hook(instance._before_stop)
            await self._hook(instance.on_stop)
        except Exception:
            log.exception("on_stop of actor %r failed", self.name)

    async def _resume_pending(self) -> None:
        """Start the instance a RESTART / START_INSTANCE asked for (its
        backoff has passed)."""
        directive, self._pending, self._resume_at = self._pending, None, None
        assert directive is not None
        await self._start_instance(directive.reason)
        if directive.ack is not None:
            directive.ack.set(None)

    async def _process_system(self) -> None:
        system = self.mailbox.system
        assert system is not None
        while system:
            message = system.popleft()
            if message is _EXIT:
                if self._state is RUNNING:
                    self._exit()
            elif isinstance(message, Directive):
                await self._apply(message)
            elif isinstance(message, Failed):
                supervise = getattr(self.instance, "_supervise", None)
                if supervise is None:
                    log.error("%r got a child failure but supervises nothing", self)
                else:
                    supervise(message)
            if self._state is DEAD:
                return

    async def _apply(self, directive: Directive) -> None:
        action = directive.action
        if action is Action.RESUME:
            if self._state is SUSPENDED and self._resume_at is None:
                if self._needs_fresh:  # nothing sane to resume: start afresh
                    await self._apply(Directive(Action.RESTART, directive.reason))
                else:
                    self._state = RUNNING
        elif action is Action.STOP:
            self._stop_ack = directive.ack
            self._terminated_reason = directive.terminated_reason
            self._state = DEAD
        elif action is Action.STOP_INSTANCE:
            await self._stop_instance()
            self._state = SUSPENDED
            self._resume_at = None
            if directive.ack is not None:
                directive.ack.set(None)
        elif action in (Action.RESTART, Action.START_INSTANCE):
            if action is Action.RESTART:
                await self._stop_instance()
            self._state = SUSPENDED
            self._pending = directive
            self._resume_at = _monotonic() + directive.delay

    async def _finish(self) -> None:
        """End the cell: stop the instance, unregister, dead-letter what is
        queued, tell the watchers."""
        with _rare:
            self.alive = False
            watchers, self._watchers = self._watchers, None
        self._state = DEAD
        await self._stop_instance()
        self.system._unregister(self._as_cell())
        self.drain_dead()
        for watcher in watchers or ():
            watcher.deliver_internal(Terminated(self.name, self._terminated_reason))
        for waiter in self._exit_waiters or ():
            waiter.set(True)
        if not self._started:
            self._set_started()
        self.ended = True
        self._ended()
        if self._stop_ack is not None:
            self._stop_ack.set(None)
        self._ack_leftovers()

    def _ack_leftovers(self) -> None:
        """Answer directives posted to a cell that has ended (any thread)."""
        system = self.mailbox.system
        while system:
            try:
                message = system.popleft()
            except IndexError:
                return
            if isinstance(message, Directive) and message.ack is not None:
                message.ack.set(None)

    def _as_cell(self) -> Cell:
        return self  # type: ignore[return-value]  # Lifecycle is only ever a Cell's base


class _ExitRequest:
    """System message from an actor to itself: exit after this message."""


_EXIT = _ExitRequest()


def _not_started(message: Any) -> Any:
    raise ActorNotFound("the actor has no running instance")
