"""ActorRef: the handle through which messages reach a local actor."""

from __future__ import annotations

import asyncio
import time
from _thread import get_ident
from typing import TYPE_CHECKING, Any

from taskmesh.actors.flow import current_cell, wait_for_room, wait_for_room_async
from taskmesh.actors.future import Reply, no_waiting_on
from taskmesh.actors.mailbox import STOP, LoopMailbox
from taskmesh.errors import ActorError, ActorNotFound, MailboxFull

if TYPE_CHECKING:
    from taskmesh.actors.cell import Cell
    from taskmesh.actors.system import ActorSystem

__all__ = ["ActorRef"]

_monotonic = time.monotonic


class ActorRef:
    """A name-bound reference to a local actor; safe to share between threads.

    The ref is bound to the actor's name: it reaches the same cell across
    restarts (same mailbox, queued messages kept) and, if a supervisor
    re-creates the actor under the same name, the new one.
    """

    __slots__ = ("_cell", "_system", "name")

    def __init__(self, system: ActorSystem, name: str, cell: Cell | None) -> None:
        self._system = system
        self.name = name
        self._cell = cell

    def __repr__(self) -> str:
        return f"<ActorRef {self.name!r}>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ActorRef)
            and other.name == self.name
            and (other._system is self._system)
        )

    def __hash__(self) -> int:
        return hash(self.name)

    def _live_cell(self) -> Cell | None:
        cell = self._cell
        if cell is None or not cell.alive:
            cell = self._system._cells.get(self.name)
            if cell is not None:
                self._cell = cell
        return cell

    def is_alive(self) -> bool:
        """Whether an actor holds this name now (it may stop right after)."""
        cell = self._live_cell()
        return cell is not None and cell.alive

    def tell(self, message: Any, *, block: bool = True) -> None:
        """Send ``message`` (at most once).

        A full mailbox blocks the calling thread until there is room,
        within the system's ``send_timeout``; after that the message is a
        ``mailbox_full`` dead letter and :class:`MailboxFull` is raised.
        With ``block=False`` a full mailbox makes it a dead letter at once,
        without raising. No such actor, or an actor that stopped, makes a
        dead letter too. (See :mod:`taskmesh.actors.flow` for the sends
        that never wait: to itself, in a cycle, from an event loop.)
        """
        cell = self._cell
        if cell is None or not cell.alive:
            cell = self._live_cell()
            if cell is None:
                self._system.dead_letters.record(self.name, message, "actor_not_found")
                return
        mailbox = cell.mailbox
        if mailbox.qsize() >= mailbox.capacity:
            if not block:
                self._system.dead_letters.record(self.name, message, "mailbox_full")
                return
            wait_for_room(cell, message, timeout=self._system.send_timeout, ask=False)
        if type(mailbox) is LoopMailbox:  # the bare message (cheaper than an attribute)
            mailbox.enqueue(message)
            if not mailbox.scheduled:
                mailbox.schedule()
        else:  # a thread's mailbox: its thread always waits on it, no scheduling
            mailbox.enqueue((0, message, None, None))
        if not cell.alive:  # raced the actor's end: its drain may have missed us
            cell.drain_dead()

    def ask_async(
        self, message: Any, *, timeout: float | None = None, idempotency_key: str | None = None
    ) -> Reply:
        """Send ``message`` and return a :class:`Reply` to wait on later.

        Raises :class:`ActorNotFound` at once when no actor holds the name.
        A full mailbox blocks the calling thread until there is room, within
        ``timeout`` (default: the system's ``send_timeout``), then raises
        :class:`MailboxFull`. With ``timeout``, the message is not handled
        once that many seconds have passed. With ``idempotency_key``, a
        repeat of a recent key is answered from memory without running.
        """
        cell = self._cell
        if cell is None or not cell.alive:
            cell = self._live_cell()
            if cell is None:
                raise ActorNotFound(f"no actor named {self.name!r}")
        if cell.thread_id == get_ident() or (
            cell.thread_id == -1 and current_cell.get() is cell and cell.max_concurrency == 1
        ):
            raise ActorError(f"actor {self.name!r} asked itself: that would deadlock")
        mailbox = cell.mailbox
        deadline = None if timeout is None else _monotonic() + timeout
        reply = Reply(deadline)
        if mailbox.qsize() >= mailbox.capacity:
            wait = self._system.send_timeout if timeout is None else timeout
            if _running_loop() is not None:  # never block a coroutine's loop: send later
                _background(self._send_when_room(cell, message, reply, wait, idempotency_key))
                return reply
            wait_for_room(cell, message, timeout=wait, ask=True)
        return self._put_ask(cell, message, reply, idempotency_key)

    async def _send_when_room(
        self, cell: Cell, message: Any, reply: Reply, wait: float, idempotency_key: str | None
    ) -> None:
        try:
            await wait_for_room_async(cell, message, timeout=wait, ask=True)
        except MailboxFull as error:
            reply.fail(error)
            return
        self._put_ask(cell, message, reply, idempotency_key)

    def _put_ask(
        self, cell: Cell, message: Any, reply: Reply, idempotency_key: str | None
    ) -> Reply:
        mailbox, deadline = cell.mailbox, reply.deadline
        if idempotency_key is None:
            mailbox.put((0, message, reply, deadline))
        else:
            handle = self._system.idempotency.admit(self.name, idempotency_key, reply)
            if handle is None:
                return reply  # a repeat: answered from memory, or waits for the first
            mailbox.put((0, message, handle, deadline))
        if not cell.alive:
            cell.drain_dead()
        return reply

    def begin_ask(
        self, message: Any, *, timeout: float | None = None, idempotency_key: str | None = None
    ) -> Reply:
        """Start an ask the caller waits for at once: :meth:`ask_async` for a
        local actor (a remote ref reads the answer in the caller's thread)."""
        return self.ask_async(message, timeout=timeout, idempotency_key=idempotency_key)

    def ask(
        self, message: Any, *, timeout: float | None = None, idempotency_key: str | None = None
    ) -> Any:
        """Send ``message`` and wait for the reply.

        Returns what the actor's ``receive`` returned. Raises the actor's own
        exception, :class:`AskTimeout` after ``timeout`` seconds (default:
        the system's ``ask_timeout``), :class:`ActorNotFound` or
        :class:`MailboxFull`.
        """
        if timeout is None:
            timeout = self._system.ask_timeout
        where = no_waiting_on(get_ident())
        if where is not None:  # refuse before sending, not after
            raise ActorError(f"cannot make a sync ask on {where}: use `await ref.ask_async(...)`")
        reply = self.ask_async(message, timeout=timeout, idempotency_key=idempotency_key)
        return reply.get(timeout)

    async def tell_async(self, message: Any) -> None:
        """Send ``message`` from a coroutine: like :meth:`tell`, but a full
        mailbox suspends the coroutine, not its thread, until there is room
        (within the system's ``send_timeout``; then a ``mailbox_full`` dead
        letter and :class:`MailboxFull`)."""
        cell = self._cell
        if cell is None or not cell.alive:
            cell = self._live_cell()
            if cell is None:
                self._system.dead_letters.record(self.name, message, "actor_not_found")
                return
        mailbox = cell.mailbox
        if mailbox.qsize() >= mailbox.capacity:
            await wait_for_room_async(cell, message, timeout=self._system.send_timeout, ask=False)
        if type(mailbox) is LoopMailbox:
            mailbox.enqueue(message)
            if not mailbox.scheduled:
                mailbox.schedule()
        else:
            mailbox.enqueue((0, message, None, None))
        if not cell.alive:
            cell.drain_dead()

    def stop(self, *, timeout: float | None = 10.0) -> bool:
        """Stop the actor after the messages already queued (a normal exit).

        Waits up to ``timeout`` seconds (``None``: do not wait) and returns
        whether it stopped for good; a ``permanent`` child of a supervisor is
        restarted instead (returns False).
        """
        cell = self._live_cell()
        if cell is None:
            return True
        reply = Reply()
        cell.mailbox.put((STOP, None, reply, None))
        if not cell.alive:
            cell.drain_dead()
            return True
        if timeout is None:
            return False
        try:
            stopped = bool(reply.get(timeout))
        except ActorNotFound:
            return True
        if stopped:
            cell.system.settle(cell, timeout)  # its cluster name is free too
        return stopped

    def _watch(self, watcher: Cell) -> None:
        cell = self._live_cell()
        if cell is None:
            from taskmesh.actors.messages import Terminated

            watcher.deliver_internal(Terminated(self.name, "not_found"))
            return
        cell.add_watcher(watcher)

    def _unwatch(self, watcher: Cell) -> None:
        cell = self._live_cell()
        if cell is not None:
            cell.remove_watcher(watcher)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


_sending: set[asyncio.Task[None]] = set()
"""Sends waiting for room on behalf of ``ask_async`` (kept referenced)."""


def _background(step: Any) -> None:
    task = asyncio.get_running_loop().create_task(step)
    _sending.add(task)
    task.add_done_callback(_sending.discard)
