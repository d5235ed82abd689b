"""ThreadCell: a cell that runs its actor on a thread of its own.

The execution strategy for actors whose ``receive`` is a plain function:
one pykka ``ThreadingActor`` thread per actor, blocking on the mailbox, so
``receive`` may block (sleep, do I/O, make sync asks) without stalling any
other actor. Every method here runs in the cell's own thread unless its
docstring says otherwise.

An inline actor (``Actor.inline``) also runs remote messages on the
transport's I/O thread while idle (:meth:`ThreadCell.try_inline`). Its
thread then holds ``_busy`` whenever it is not blocked on the mailbox, so
the two threads never run the instance at once; and the I/O thread runs a
message inline only when every message it queued earlier is taken
(``io_queued`` written by the I/O thread, ``_io_taken`` by the cell's
thread: one writer each, no lock), which keeps FIFO per sender.
"""

from __future__ import annotations

import logging
import threading
import time
from _thread import allocate_lock, get_ident
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pykka

from taskmesh.actors.cell import DEAD, RUNNING, Cell, run_sync
from taskmesh.actors.flow import current_cell
from taskmesh.actors.future import ReplyTo
from taskmesh.actors.mailbox import REMOTE, STOP, TIMER, TRACED, WAKE_ENVELOPE, Envelope, Mailbox
from taskmesh.actors.traced import Traced

if TYPE_CHECKING:
    from taskmesh.actors.supervisor import Child
    from taskmesh.actors.system import ActorSystem

__all__ = ["ThreadCell"]

log = logging.getLogger("taskmesh.actors")

_monotonic = time.monotonic


class ThreadCell(Cell, pykka.ThreadingActor):
    """Runs one actor on its own thread."""

    use_daemon_thread = True

    @staticmethod
    def _create_actor_inbox() -> Any:
        from queue import SimpleQueue  # pykka's own inbox is unused; keep it cheap

        return SimpleQueue()

    def __init__(
        self,
        system: ActorSystem,
        name: str,
        spec: Child,
        *,
        parent: Cell | None,
        capacity: int,
        restart: str,
        max_attempts: int = 1,
        inline: bool = False,
    ) -> None:
        pykka.ThreadingActor.__init__(self)
        Cell.__init__(
            self, system, name, spec, parent=parent, restart=restart, max_attempts=max_attempts
        )
        self.mailbox: Mailbox = Mailbox(capacity)
        self.inline = inline
        self._busy = allocate_lock() if inline else None
        if self._busy is not None:
            self._busy.acquire()  # until the thread starts: no inline run before on_start
        self._stash: Envelope | None = None  # taken from the mailbox, not yet run
        self.io_queued = 0  # REMOTE messages put by the I/O thread
        self._io_taken = 0  # REMOTE messages taken by this cell's thread

    # --- any thread -------------------------------------------------------

    def start(self) -> None:  # type: ignore[override]
        """Start the thread (caller's thread); returns at once."""
        self._start_actor_loop()

    def _held(self) -> list[Envelope]:
        held = super()._held()
        stash, self._stash = self._stash, None
        if stash is not None:
            held.append(stash)
        return held

    def try_inline(
        self,
        message: Any,
        reply: ReplyTo | None,
        deadline: float | None,
        traced: Traced | None = None,
    ) -> bool:
        """Run one remote message now if this inline actor is idle.

        Runs on the transport's I/O thread (the only caller, so that
        ``io_queued`` has one writer). Returns False, having done nothing,
        when the actor is busy, suspended, has system messages waiting or
        has not yet taken every message queued for it earlier; the caller
        then queues the message as ``REMOTE`` (or ``TRACED``). A failure is
        handed to the actor's thread, which reports it to the supervisor as
        usual. ``traced``: the message came with a trace context; it runs
        inside its span (one ``is None`` test more for untraced messages).
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
                self.received += 1
                if traced is None:
                    result = self._receive(message)
                else:
                    result = traced.scope.run(self, self._receive, message)
            except Exception as exc:
                self._message_failed(traced or message, reply, deadline, 1, exc)
                self.mailbox.put(WAKE_ENVELOPE)  # its thread carries on from here
            else:
                if reply is not None:
                    reply.set(result)
            return True
        finally:
            busy.release()

    # --- the actor's thread -----------------------------------------------

    async def _hook(self, hook: Callable[..., Any], *args: Any) -> None:
        hook(*args)

    def _ended(self) -> None:
        self.actor_stopped.set()

    def _actor_loop(self) -> None:
        self.thread_id = get_ident()
        threading.current_thread().name = f"taskmesh:{self.name}"
        current_cell.set(self)
        try:
            run_sync(self._start_instance(None))
            self._run()
        except BaseException:
            log.critical("actor %r crashed inside the runtime", self.name, exc_info=True)
            self._state = DEAD
        finally:
            run_sync(self._finish())

    def _run(self) -> None:
        mailbox = self.mailbox
        get = mailbox.get if self._busy is None else self._inline_get
        system = mailbox.system
        while True:
            if system:
                run_sync(self._process_system())
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
                        if kind == TRACED:
                            self._traced(message, reply, deadline, 1)
                        else:
                            self._control(kind, message, reply)
                        continue
                    self._io_taken += 1
                self.received += 1
            else:
                self._retry = None
                message, reply, deadline, attempt = retry
                if type(message) is Traced:
                    self._traced(message, reply, deadline, attempt)
                    continue
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

    def _traced(
        self, traced: Traced, reply: ReplyTo | None, deadline: float | None, attempt: int
    ) -> None:
        """One message that came with a trace context: handled as in
        :meth:`_run`, inside its span (kept apart so untraced messages pay
        nothing for it). A retry keeps the wrapper, so it is traced too."""
        if attempt == 1:
            self.received += 1
            if self.inline:  # queued by the I/O thread, counted like REMOTE
                self._io_taken += 1
        if deadline is not None and deadline < _monotonic():
            self._expired(traced.message, reply)
            return
        try:
            result = traced.scope.run(self, self._receive, traced.message)
        except Exception as exc:
            self._message_failed(traced, reply, deadline, attempt, exc)
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
            envelope: Envelope = self.mailbox.get()
        finally:
            busy.acquire()
        if self._state is not RUNNING or self._retry is not None or self.mailbox.system:
            # An inline run failed meanwhile (or a directive came): run this
            # later, after the supervisor has decided. WAKE runs nothing.
            self._stash = envelope
            return WAKE_ENVELOPE
        return envelope

    def _control(self, kind: int, message: Any, reply: ReplyTo | None) -> None:
        if kind == TIMER:
            wanted, payload = self._timer_payload(message)
            if not wanted:
                return  # cancelled or replaced after it fired
            try:
                self._receive(payload)
            except Exception as exc:
                self._fail(exc)
        elif kind == STOP:
            self._stop_requested(reply)

    def _wait_suspended(self) -> None:
        resume_at = self._resume_at
        if resume_at is None:
            self.mailbox.wait_system(None)
            return
        remaining = resume_at - _monotonic()
        if remaining > 0:
            self.mailbox.wait_system(remaining)
            return
        run_sync(self._resume_pending())
