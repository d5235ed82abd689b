"""LoopCell: a cell that runs its async actor on the actor system's event loop.

The execution strategy for actors whose ``receive`` is ``async def``. A
light actor: no thread, and while idle no task either, only its cell, an
empty mailbox and its instance. When messages arrive, the mailbox
schedules the cell on the loop (:class:`~taskmesh.actors.loop.ActorLoop`),
whose ``_run`` starts one drain task that handles every queued message in
turn and ends when the mailbox is empty. While a ``receive`` awaits, other
actors run. With ``max_concurrency = N``, up to N ``receive`` calls of one
actor run at once (each a task of its own), started in mailbox order.

Lifecycle work whose hooks are plain functions (the usual case: starting
an actor whose ``on_start`` is not ``async``, stopping an idle one) runs
straight in ``_run``, without a task; that keeps spawning and stopping
100,000 actors cheap.

Every method here runs on the loop's thread unless its docstring says
otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import suppress
from queue import Empty
from typing import TYPE_CHECKING, Any

from taskmesh.actors.actor import lifecycle_is_sync
from taskmesh.actors.cell import DEAD, RUNNING, SUSPENDED, Cell, run_sync
from taskmesh.actors.directives import Action, Directive
from taskmesh.actors.flow import current_cell
from taskmesh.actors.future import Reply, ReplyTo
from taskmesh.actors.mailbox import STOP, TIMER, TRACED, Boxed, Envelope, LoopMailbox, unbox
from taskmesh.actors.traced import Traced
from taskmesh.errors import ActorError

if TYPE_CHECKING:
    from taskmesh.actors.loop import ActorLoop
    from taskmesh.actors.supervisor import Child
    from taskmesh.actors.system import ActorSystem

__all__ = ["LoopCell", "stop_cells"]

log = logging.getLogger("taskmesh.actors")

_monotonic = time.monotonic

_NOTHING: Any = object()
_EMPTY: Any = object()

FAIR_SHARE = 1000
"""Messages one actor handles before it lets the loop run the others: a
flood from other threads does not hold the loop (every async actor,
timers) for as long as it lasts; measured, it costs about 1% per message."""


class LoopCell(Cell):
    """Runs one async actor on the event loop."""

    __slots__ = (
        "_inflight", "_limit", "_loop", "_resume_handle", "_slot", "_stash", "_sync_life", "_task",
    )  # fmt: skip

    mailbox: LoopMailbox

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
        loop: ActorLoop,
    ) -> None:
        super().__init__(
            system, name, spec, parent=parent, restart=restart, max_attempts=max_attempts
        )
        self._loop = loop
        self.mailbox = LoopMailbox(capacity, self._wake)
        self._task: asyncio.Task[None] | None = None
        self._limit = max(1, int(spec.actor.max_concurrency))
        self._inflight: set[asyncio.Task[None]] | None = None
        self._slot: asyncio.Future[None] | None = None
        self._resume_handle: asyncio.TimerHandle | None = None
        self._stash: Any = _NOTHING  # an item a drain took and left while it stopped
        # With concurrent receives a restart awaits them: that needs a task.
        self._sync_life = self._limit == 1 and lifecycle_is_sync(spec.actor)

    # --- any thread -----------------------------------------------------------

    def start(self) -> None:
        """Schedule the first instance's start (caller's thread): it starts
        like a restart whose backoff has passed."""
        self._loop.start()
        self._state = SUSPENDED
        self._pending = Directive(Action.START_INSTANCE)
        self._resume_at = 0.0
        self.mailbox.scheduled = True
        self._loop.schedule(self)

    def _wake(self) -> None:
        self._loop.schedule(self)

    def interrupt(self) -> None:
        """Cancel the receives this cell runs now (any thread), for a
        directive posted before that must not wait for them (a stop: an
        entity's handoff past its timeout), which is then handled at once.
        An interrupted ask's asker gets :class:`ActorError`; what was queued
        behind stays queued. A receive that blocks the loop itself (a plain
        ``def``) cannot be interrupted."""
        loop = self._loop.loop
        if loop is not None:
            with suppress(RuntimeError):  # the loop is closed: nothing runs
                loop.call_soon_threadsafe(self._interrupt)

    def _interrupt(self) -> None:
        """:meth:`interrupt` on the loop: cancel the drain task (and the
        concurrent receives), then run again to take the directive."""
        task = self._task
        if task is None or task.done() or self._state is not RUNNING or not self.mailbox.system:
            return  # idle, finishing (a stop's own task), or no directive waits
        for running in list(self._inflight or ()):
            running.cancel()
        task.cancel()
        task.add_done_callback(lambda _: self._run())

    def _held(self) -> list[Envelope]:
        held = super()._held()
        stash, self._stash = self._stash, _NOTHING
        if stash is not _NOTHING:
            held.append(unbox(stash))
        return held

    def _kick(self) -> None:
        """Scheduled from the loop's own thread (another actor told it): a
        running idle actor gets its drain task at once, without a round
        through the loop's callbacks; anything else goes the usual way."""
        if (
            self._task is None
            and self._state is RUNNING
            and not self.mailbox.system
            and not self.ended
        ):
            self._task = asyncio.get_running_loop().create_task(self._drain())
        else:
            asyncio.get_running_loop().call_soon(self._run)

    @property
    def max_concurrency(self) -> int:
        return self._limit

    # --- the loop ---------------------------------------------------------------

    async def _hook(self, hook: Callable[..., Any], *args: Any) -> None:
        result = hook(*args)
        if asyncio.iscoroutine(result):
            await result

    def _run(self) -> None:
        """Handle what is due: lifecycle here when it cannot suspend, user
        messages in a drain task. Called by the loop when scheduled."""
        if self._task is not None:
            self._poke()  # a drain waiting for a free slot looks at the system lane
            return
        if self.ended:
            return
        if not self._sync_life:
            self._task = asyncio.get_running_loop().create_task(self._drain())
            return
        mailbox = self.mailbox
        while True:
            if (mailbox.system or self._state is not RUNNING) and not run_sync(self._control()):
                return  # suspended (a directive or the backoff timer wakes it) or ended
            if mailbox.qsize() or self._retry is not None:
                self._task = asyncio.get_running_loop().create_task(self._drain())
                return
            mailbox.scheduled = False
            if not mailbox.qsize() and not mailbox.system:
                return
            mailbox.scheduled = True

    async def _control(self) -> bool:
        """System messages and a due (re)start; True when user messages may
        run. While suspended, ``scheduled`` stays set, so user messages do
        not wake the cell; directives and the backoff timer do."""
        while True:
            if self.mailbox.system:
                await self._process_system()
            state = self._state
            if state is RUNNING:
                return True
            if state is DEAD:
                if not self.ended:
                    await self._finish()
                return False
            resume_at = self._resume_at
            if resume_at is None:
                return False
            if resume_at > _monotonic():
                self._arm(resume_at)
                return False
            await self._resume_pending()

    def _arm(self, when: float) -> None:
        handle = self._resume_handle
        if handle is not None:
            if handle.when() == when:
                return
            handle.cancel()
        self._resume_handle = asyncio.get_running_loop().call_at(when, self._resume_due)

    def _resume_due(self) -> None:
        self._resume_handle = None
        self._run()

    async def _drain(self) -> None:
        """The drain task: handle queued messages until none is left."""
        current_cell.set(self)
        mailbox = self.mailbox
        get = mailbox._queue.get
        concurrent = self._limit > 1
        lingered = False
        # an item the burst took and left to this loop, or _EMPTY
        held: Any = self._stash
        self._stash = _NOTHING
        budget = FAIR_SHARE
        try:
            while True:
                if not budget:
                    budget = FAIR_SHARE
                    await asyncio.sleep(0)  # a flooded actor lets the others run
                if mailbox.system or self._state is not RUNNING:
                    if held is not _NOTHING and held is not _EMPTY:
                        # Taken from the queue, not yet handled: a stop makes it
                        # a dead letter (_held), a suspension keeps it for later.
                        self._stash, held = held, _NOTHING
                    if not await self._control():
                        return
                    if self._stash is not _NOTHING:
                        held, self._stash = self._stash, _NOTHING
                if concurrent and self._inflight and len(self._inflight) >= self._limit:
                    self._slot = asyncio.get_running_loop().create_future()
                    await self._slot
                    continue
                retry = self._retry
                if retry is None:
                    if held is _NOTHING:
                        try:
                            item = get(False)
                        except Empty:
                            item = _EMPTY
                    else:
                        item, held = held, _NOTHING
                    if item is _EMPTY:
                        if not lingered:
                            # Let the loop run once before ending: an actor in a
                            # conversation (ping-pong, a ring) is usually sent its
                            # next message meanwhile, and this task handles it
                            # instead of a new one (measured: the task per burst
                            # was most of a message's cost).
                            lingered = True
                            await asyncio.sleep(0)
                            continue
                        mailbox.scheduled = False
                        if not mailbox.qsize() and not mailbox.system:
                            return
                        mailbox.scheduled = True
                        continue
                    lingered = False
                    if mailbox._space is not None:
                        mailbox.made_room()
                    if type(item) is not Boxed and not concurrent and mailbox._space is None:
                        # The common case, kept tight: plain tells back to back
                        # while nothing else needs the cell (a third less per
                        # message). What it takes but leaves (a boxed envelope,
                        # any item once senders wait for room, or that it found
                        # none) is ``held``.
                        receive = self._receive
                        while True:
                            self.received += 1
                            budget -= 1
                            try:
                                await receive(item)
                            except Exception as exc:
                                self._message_failed(item, None, None, 1, exc)
                                break
                            if not budget or mailbox.system:
                                break
                            try:
                                item = get(False)
                            except Empty:
                                held = _EMPTY
                                break
                            if type(item) is Boxed or mailbox._space is not None:
                                held = item
                                break
                        continue
                    budget -= 1
                    attempt = 1
                    if type(item) is Boxed:
                        kind, message, reply, deadline = item.envelope
                        if kind:
                            if kind == TRACED:
                                self.received += 1
                                await self._traced(message, reply, deadline, 1)
                            else:
                                await self._control_message(kind, message, reply)
                            continue
                    else:
                        message, reply, deadline = item, None, None
                    self.received += 1
                else:
                    self._retry = None
                    message, reply, deadline, attempt = retry
                    if type(message) is Traced:
                        await self._traced(message, reply, deadline, attempt)
                        continue
                if deadline is not None and deadline < _monotonic():
                    self._expired(message, reply)
                elif concurrent:
                    self._begin(message, reply, deadline, attempt)
                else:
                    try:
                        result = await self._receive(message)
                    except Exception as exc:
                        self._message_failed(message, reply, deadline, attempt, exc)
                    except asyncio.CancelledError:
                        _interrupted(self.name, reply)
                        raise
                    else:
                        if reply is not None:
                            reply.set(result)
        except asyncio.CancelledError:
            if held is not _NOTHING and held is not _EMPTY:
                self._stash = held  # taken, not handled: _held keeps it
            raise
        finally:
            self._task = None

    async def _traced(
        self, traced: Traced, reply: ReplyTo | None, deadline: float | None, attempt: int
    ) -> None:
        """One message that came with a trace context: handled as in
        :meth:`_drain`, inside its span (kept apart so untraced messages pay
        nothing for it). A retry keeps the wrapper, so it is traced too."""
        if deadline is not None and deadline < _monotonic():
            self._expired(traced.message, reply)
        elif self._limit > 1:
            self._begin(traced.message, reply, deadline, attempt, traced)
        else:
            try:
                result = await traced.scope.run_async(self, self._receive, traced.message)
            except Exception as exc:
                self._message_failed(traced, reply, deadline, attempt, exc)
            except asyncio.CancelledError:
                _interrupted(self.name, reply)
                raise
            else:
                if reply is not None:
                    reply.set(result)

    async def _control_message(self, kind: int, message: Any, reply: ReplyTo | None) -> None:
        if kind == TIMER:
            wanted, payload = self._timer_payload(message)
            if wanted:
                try:
                    await self._receive(payload)
                except Exception as exc:
                    self._fail(exc)
        elif kind == STOP:
            if self._inflight:  # a normal exit lets running receives finish
                await asyncio.gather(*self._inflight, return_exceptions=True)
            self._stop_requested(reply)

    # --- max_concurrency > 1 --------------------------------------------------

    def _begin(
        self,
        message: Any,
        reply: ReplyTo | None,
        deadline: float | None,
        n: int,
        traced: Traced | None = None,
    ) -> None:
        task = asyncio.get_running_loop().create_task(
            self._handle(message, reply, deadline, n, traced)
        )
        if self._inflight is None:
            self._inflight = set()
        self._inflight.add(task)
        task.add_done_callback(self._handled)

    async def _handle(
        self,
        message: Any,
        reply: ReplyTo | None,
        deadline: float | None,
        attempt: int,
        traced: Traced | None = None,
    ) -> None:
        try:
            if traced is None:
                result = await self._receive(message)
            else:
                result = await traced.scope.run_async(self, self._receive, message)
        except asyncio.CancelledError:
            if reply is not None:
                reply.fail(ActorError(f"actor {self.name!r} restarted or stopped meanwhile"))
            raise
        except Exception as exc:
            if self._state is RUNNING:
                self._message_failed(traced or message, reply, deadline, attempt, exc)
                self._poke()
            elif reply is not None:  # the instance failed already: the supervisor decides once
                reply.fail(exc)
        else:
            if reply is not None:
                reply.set(result)

    def _handled(self, task: asyncio.Task[None]) -> None:
        if self._inflight is not None:
            self._inflight.discard(task)
        self._poke()

    def _poke(self) -> None:
        slot, self._slot = self._slot, None
        if slot is not None and not slot.done():
            slot.set_result(None)

    async def _stop_instance(self) -> None:
        inflight = self._inflight
        if inflight:  # a restart or a stop for good cancels the instance's other receives
            for task in list(inflight):
                task.cancel()
            await asyncio.gather(*inflight, return_exceptions=True)
        await super()._stop_instance()

    async def _finish(self) -> None:
        handle, self._resume_handle = self._resume_handle, None
        if handle is not None:
            handle.cancel()
        await super()._finish()

    # --- stopping many at once --------------------------------------------------

    async def stop_here(self, reason: str, timeout: float) -> None:
        """Stop this cell for good, from a task on the loop (a supervisor
        stopping its children). An idle cell is finished right here."""
        if self.ended:
            return
        if self._task is None and self._limit == 1:
            self._terminated_reason = reason
            self._state = DEAD
            if self._sync_life:
                run_sync(self._finish())
                return
            self._task = asyncio.current_task()  # keeps _run out meanwhile
            try:
                await asyncio.wait_for(self._finish(), timeout)
            finally:
                self._task = None
            return
        ack = Reply()
        self.post(Directive(Action.STOP, ack=ack, terminated_reason=reason))
        try:
            await asyncio.wait_for(_wait(ack), timeout)
        except TimeoutError:
            log.warning("actor %r did not stop within %.1f s", self.name, timeout)


def _interrupted(name: str, reply: ReplyTo | None) -> None:
    if reply is not None:
        reply.fail(ActorError(f"actor {name!r} was stopped while handling this message"))


async def _wait(reply: Reply) -> None:
    await reply


async def stop_cells(cells: list[tuple[LoopCell, float]], reason: str = "stopped") -> None:
    """Stop ``cells`` for good, one after the other, in the given order;
    each ``(cell, timeout)``. Runs as one task on the loop."""
    for cell, timeout in cells:
        try:
            await cell.stop_here(reason, timeout)
        except Exception:
            log.exception("stopping actor %r failed", cell.name)
