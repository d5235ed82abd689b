"""The cell: the runtime half of an actor, a pykka ``ThreadingActor``.

A cell owns one name, one mailbox and one thread for its whole life; the
user's :class:`~taskmesh.Actor` instance inside it is replaceable. That is
how a restart keeps the address: refs point at the cell, the supervisor
swaps the instance, and the queued messages stay where they are.

States::

    RUNNING --failure / normal exit--> SUSPENDED (parent told, waits)
    SUSPENDED --RESUME--> RUNNING
    SUSPENDED --RESTART / START_INSTANCE (after backoff)--> RUNNING
    any --STOP--> DEAD (thread ends)

While suspended the cell handles only system messages; user messages wait
in the mailbox. Every method here runs in the cell's own thread unless its
docstring says otherwise.

An inline actor (``Actor.inline``) also runs remote messages on the
transport's I/O thread while idle (:meth:`Cell.try_inline`). Its thread
then holds ``_busy`` whenever it is not blocked on the mailbox, so the two
threads never run the instance at once; and the I/O thread runs a message
inline only when every message it queued earlier is taken (``io_queued``
written by the I/O thread, ``_io_taken`` by the cell's thread: one writer
each, no lock), which keeps FIFO per sender.
"""

from __future__ import annotations

import logging
import threading
import time
from _thread import allocate_lock, get_ident
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any

import pykka

from taskmesh.actors.directives import Action, Directive, Failed
from taskmesh.actors.flow import current_cell
from taskmesh.actors.future import Reply, ReplyTo
from taskmesh.actors.mailbox import REMOTE, STOP, TIMER, WAKE, WAKE_ENVELOPE, Envelope, Mailbox
from taskmesh.actors.messages import Terminated
from taskmesh.actors.timers import Timers
from taskmesh.errors import ActorNotFound, AskTimeout

if TYPE_CHECKING:
    from taskmesh.actors.actor import Actor
    from taskmesh.actors.ref import ActorRef
    from taskmesh.actors.system import ActorSystem

__all__ = ["Cell"]

log = logging.getLogger("taskmesh.actors")

_monotonic = time.monotonic


class _State(Enum):
    RUNNING = 1
    SUSPENDED = 2
    DEAD = 3


RUNNING, SUSPENDED, DEAD = _State.RUNNING, _State.SUSPENDED, _State.DEAD


class Cell(pykka.ThreadingActor):
    """Runs one actor. Created by :class:`~taskmesh.actors.system.ActorSystem`."""

    use_daemon_thread = True

    @staticmethod
    def _create_actor_inbox() -> Any:
        from queue import SimpleQueue  # pykka's own inbox is unused; keep it cheap

        return SimpleQueue()

    def __init__(
        self,
        system: ActorSystem,
        name: str,
        factory: Callable[[], Actor],
        *,
        parent: Cell | None,
        capacity: int,
        restart: str,
        max_attempts: int = 1,
        inline: bool = False,
    ) -> None:
        super().__init__()
        self.system = system
        self.name = name
        self.factory = factory
        self.parent = parent
        self.restart = restart
        self.max_attempts = max_attempts
        self.mailbox = Mailbox(capacity)
        self.alive = True
        self.generation = 0
        self.instance: Actor | None = None
        self.thread_id = 0
        self.started = threading.Event()
        self.timers = Timers(self)
        self._receive: Callable[[Any], Any] = _not_started
        self._state = RUNNING
        self._resume_at: float | None = None
        self._pending: Directive | None = None
        self._stop_ack: Reply | None = None
        self._terminated_reason = "stopped"
        self._watch_lock = threading.Lock()
        self._watchers: set[Cell] = set()
        self._ref: ActorRef | None = None
        self._exit_waiters: list[ReplyTo] = []
        self._retry: tuple[Any, ReplyTo | None, float | None, int] | None = None
        self._needs_fresh = False
        self.inline = inline
        self._busy = allocate_lock() if inline else None
        if self._busy is not None:
            self._busy.acquire()  # until the thread starts: no inline run before on_start
        self._stash: Envelope | None = None  # taken from the mailbox, not yet run
        self.io_queued = 0  # REMOTE messages put by the I/O thread
        self._io_taken = 0  # REMOTE messages taken by this cell's thread
        self.waiting_for: Cell | None = None  # whose mailbox this actor waits for room in

    def __repr__(self) -> str:
        return f"<Cell {self.name!r} gen={self.generation} {self._state.name}>"

    @property
    def ref(self) -> ActorRef:
        """A ref bound to this cell's name (any thread)."""
        if self._ref is None:
            from taskmesh.actors.ref import ActorRef

            self._ref = ActorRef(self.system, self.name, self)
        return self._ref

    # --- any thread -------------------------------------------------------

    def start(self) -> None:  # type: ignore[override]
        """Start the thread (caller's thread); returns at once."""
        self._start_actor_loop()

    def post(self, directive: Directive | Failed | _ExitRequest) -> None:
        """Send a system message to this cell (any thread)."""
        self.mailbox.post_system(directive)

    def stop_and_wait(self, timeout: float, reason: str = "stopped") -> bool:
        """Stop this cell for good and wait up to ``timeout`` s (any thread
        but this cell's own). Returns whether it ended in time."""
        if not self.alive and self.actor_stopped.is_set():
            return True
        ack = Reply()
        self.post(Directive(Action.STOP, ack=ack, terminated_reason=reason))
        try:
            ack.get(timeout)
        except AskTimeout:
            log.warning("actor %r did not stop within %.1f s", self.name, timeout)
            return False
        return True

    def drain_dead(self) -> None:
        """Turn queued messages of a dead cell into dead letters and failed
        asks. Idempotent; any thread (senders call it when they raced the
        cell's end)."""
        dead_letters = self.system.dead_letters
        queued = self.mailbox.drain()
        stash, self._stash = self._stash, None
        if stash is not None:
            queued.insert(0, stash)
        retry, self._retry = self._retry, None
        if retry is not None:
            queued.insert(0, (0, retry[0], retry[1], retry[2]))
        for kind, message, reply, _ in queued:
            if kind == WAKE:
                continue
            if kind == STOP:
                if reply is not None:
                    reply.set(True)
                continue
            if kind == TIMER:
                message = message[2]
            if reply is not None:
                reply.fail(
                    ActorNotFound(f"actor {self.name!r} stopped before handling the message")
                )
            else:
                dead_letters.record(self.name, message, "actor_stopped")

    def add_watcher(self, watcher: Cell) -> None:
        """Make ``watcher`` receive Terminated when this cell ends (any thread)."""
        with self._watch_lock:
            if self.alive:
                self._watchers.add(watcher)
                return
        watcher.deliver_internal(Terminated(self.name, "not_found"))

    def remove_watcher(self, watcher: Cell) -> None:
        """Undo :meth:`add_watcher` (any thread)."""
        with self._watch_lock:
            self._watchers.discard(watcher)

    def deliver_internal(self, message: Any) -> None:
        """Queue a runtime-made message (Terminated) past the bound (any thread)."""
        if self.alive:
            self.mailbox.put((0, message, None, None))
            if self.alive:
                return
        self.drain_dead()

    def try_inline(self, message: Any, reply: ReplyTo | None, deadline: float | None) -> bool:
        """Run one remote message now if this inline actor is idle.

        Runs on the transport's I/O thread (the only caller, so that
        ``io_queued`` has one writer). Returns False, having done nothing,
        when the actor is busy, suspended, has system messages waiting or
        has not yet taken every message queued for it earlier; the caller
        then queues the message as ``REMOTE``. A failure is handed to the
        actor's thread, which reports it to the supervisor as usual.
        """
        busy = self._busy
        if busy is None or self.io_queued != self._io_taken or not busy.acquire(False):
            return False
        try:
            if self._state is not RUNNING or self.mailbox.system or self._retry is not None:
                return False
            if deadline is not None and deadline < _monotonic():
                self._expired(message, reply)
                return True
            try:
                result = self._receive(message)
            except Exception as exc:
                self._message_failed(message, reply, deadline, 1, exc)
                self.mailbox.put(WAKE_ENVELOPE)  # its thread carries on from here
            else:
                if reply is not None:
                    reply.set(result)
            return True
        finally:
            busy.release()

    def request_exit(self) -> None:
        """Ask for a normal exit after the current message (actor's thread)."""
        self.post(_EXIT)

    # --- the actor's thread -----------------------------------------------

    def _actor_loop(self) -> None:
        self.thread_id = get_ident()
        threading.current_thread().name = f"taskmesh:{self.name}"
        current_cell.set(self)
        try:
            self._start_instance(None)
            self.started.set()
            self._run()
        except BaseException:
            log.critical("actor %r crashed inside the runtime", self.name, exc_info=True)
            self._state = DEAD
        finally:
            self.started.set()
            self._finish()

    def _run(self) -> None:
        mailbox = self.mailbox
        get = mailbox.get if self._busy is None else self._inline_get
        system = mailbox.system
        while True:
            if system:
                self._process_system()
            state = self._state
            if state is not RUNNING:
                if state is DEAD:
                    return
                self._wait_suspended()
                continue
            retry = self._retry
            if retry is None:
                attempt = 1
                kind, message, reply, deadline = get()
                if mailbox._space is not None:
                    mailbox.made_room()
                if kind:
                    if kind != REMOTE:
                        self._control(kind, message, reply)
                        continue
                    self._io_taken += 1
            else:
                self._retry = None
                message, reply, deadline, attempt = retry
            if deadline is not None and deadline < _monotonic():
                self._expired(message, reply)
                continue
            try:
                result = self._receive(message)
            except Exception as exc:
                self._message_failed(message, reply, deadline, attempt, exc)
            else:
                if reply is not None:
                    reply.set(result)

    def _inline_get(self) -> Envelope:
        """An inline actor's mailbox read: lets the I/O thread in meanwhile."""
        stash = self._stash
        if stash is not None:
            self._stash = None
            return stash
        busy = self._busy
        assert busy is not None
        busy.release()
        try:
            envelope = self.mailbox.get()
        finally:
            busy.acquire()
        if self._state is not RUNNING or self._retry is not None or self.mailbox.system:
            # An inline run failed meanwhile (or a directive came): run this
            # later, after the supervisor has decided. WAKE runs nothing.
            self._stash = envelope
            return WAKE_ENVELOPE
        return envelope

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
                    self.name, message, "poison",
                    f"{type(error).__name__}: {error} (failed {attempt} times)",
                )  # fmt: skip
        self._fail(error)

    def _control(self, kind: int, message: Any, reply: ReplyTo | None) -> None:
        if kind == TIMER:
            key, token, payload = message
            if not self.timers._claim(key, token):
                return  # cancelled or replaced after it fired
            try:
                self._receive(payload)
            except Exception as exc:
                self._fail(exc)
        elif kind == STOP:
            if reply is not None:
                self._exit_waiters.append(reply)
            self._exit()

    def _expired(self, message: Any, reply: ReplyTo | None) -> None:
        self.system.dead_letters.record(self.name, message, "expired", "deadline passed in mailbox")
        if reply is not None:
            reply.fail(AskTimeout(f"the ask to {self.name!r} expired before it was handled"))

    def _start_instance(self, reason: BaseException | None) -> None:
        self._state = RUNNING
        self.generation += 1
        self._needs_fresh = False
        if self.generation > 1 and self._exit_waiters:
            for waiter in self._exit_waiters:  # a permanent child came back
                waiter.set(False)
            self._exit_waiters.clear()
        try:
            instance = self.factory()
            instance._cell = self
            self.instance = instance
            self._receive = instance.receive
            if self.generation > 1:
                instance.on_restart(reason)
            instance.on_start()
        except Exception as exc:
            self._needs_fresh = True
            self._fail(exc)

    def _stop_instance(self) -> None:
        instance, self.instance = self.instance, None
        self._receive = _not_started
        self.timers.cancel_all()
        if instance is None:
            return
        try:
            instance._before_stop()
            instance.on_stop()
        except Exception:
            log.exception("on_stop of actor %r failed", self.name)

    def _fail(self, error: BaseException) -> None:
        """Report a failure to the parent and suspend until it decides."""
        self._state = SUSPENDED
        if self.parent is None or not self.parent.alive:
            log.error("actor %r failed with no supervisor; stopping it", self.name, exc_info=error)
            self._state = DEAD
            self._terminated_reason = "failed"
            return
        self.parent.post(Failed(self, error, self.generation))

    def _exit(self) -> None:
        """A normal exit: the parent decides (permanent children restart)."""
        if self.parent is None or not self.parent.alive:
            self._state = DEAD
            return
        self._state = SUSPENDED
        self.parent.post(Failed(self, None, self.generation))

    def _process_system(self) -> None:
        system = self.mailbox.system
        assert system is not None
        while system:
            message = system.popleft()
            if message is _EXIT:
                if self._state is RUNNING:
                    self._exit()
            elif isinstance(message, Directive):
                self._apply(message)
            elif isinstance(message, Failed):
                supervise = getattr(self.instance, "_supervise", None)
                if supervise is None:
                    log.error("%r got a child failure but supervises nothing", self)
                else:
                    supervise(message)
            if self._state is DEAD:
                return

    def _apply(self, directive: Directive) -> None:
        action = directive.action
        if action is Action.RESUME:
            if self._state is SUSPENDED and self._resume_at is None:
                if self._needs_fresh:  # nothing sane to resume: start afresh
                    self._apply(Directive(Action.RESTART, directive.reason))
                else:
                    self._state = RUNNING
        elif action is Action.STOP:
            self._stop_ack = directive.ack
            self._terminated_reason = directive.terminated_reason
            self._state = DEAD
        elif action is Action.STOP_INSTANCE:
            self._stop_instance()
            self._state = SUSPENDED
            self._resume_at = None
            if directive.ack is not None:
                directive.ack.set(None)
        elif action in (Action.RESTART, Action.START_INSTANCE):
            if action is Action.RESTART:
                self._stop_instance()
            self._state = SUSPENDED
            self._pending = directive
            self._resume_at = _monotonic() + directive.delay

    def _wait_suspended(self) -> None:
        resume_at = self._resume_at
        if resume_at is None:
            self.mailbox.wait_system(None)
            return
        remaining = resume_at - _monotonic()
        if remaining > 0:
            self.mailbox.wait_system(remaining)
            return
        directive, self._pending, self._resume_at = self._pending, None, None
        assert directive is not None
        self._start_instance(directive.reason)
        if directive.ack is not None:
            directive.ack.set(None)

    def _finish(self) -> None:
        with self._watch_lock:
            self.alive = False
            watchers, self._watchers = self._watchers, set()
        self._stop_instance()
        self.system._unregister(self)
        self.drain_dead()
        for watcher in watchers:
            watcher.deliver_internal(Terminated(self.name, self._terminated_reason))
        for waiter in self._exit_waiters:
            waiter.set(True)
        self.actor_stopped.set()
        if self._stop_ack is not None:
            self._stop_ack.set(None)


class _ExitRequest:
    """System message from an actor to itself: exit after this message."""


_EXIT = _ExitRequest()


def _not_started(message: Any) -> Any:
    raise ActorNotFound("the actor has no running instance")
