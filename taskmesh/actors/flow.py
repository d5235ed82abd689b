"""Flow control: a sender waits for room in a full mailbox.

A ``tell`` or ``ask`` to a full mailbox waits (blocking its thread, or, in
the ``*_async`` forms, suspending its coroutine) until the consumer has
drained the mailbox to its low-water mark (:meth:`Mailbox.on_space`),
within a deadline: the system's ``send_timeout`` for a tell, the ask's own
timeout for an ask. When the deadline passes, a tell becomes a
``mailbox_full`` dead letter and both raise :class:`MailboxFull`.

Waiting that could never end does not happen:

- an actor telling itself, or a cycle of actors each waiting for room in
  the next one's mailbox (``a -> b -> a``), does not wait: the message is
  queued past the bound (by one message per such send), so the cycle goes
  on and nothing is lost. The cycle is found by following ``waiting_for``
  from the target; each waiting actor sets its own before looking, so of
  two actors that start waiting on each other at once, at least one sees
  the cycle;
- a thread that must never block (the transport's I/O thread, the actor
  system's event loop) does not wait: the tell is a dead letter and raises
  :class:`MailboxFull` at once. On the event loop, ``await
  ref.tell_async(...)`` waits without blocking it.
"""

from __future__ import annotations

import asyncio
import time
from _thread import allocate_lock, get_ident
from contextlib import suppress
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from taskmesh.actors.future import no_waiting_on
from taskmesh.errors import MailboxFull

if TYPE_CHECKING:
    from taskmesh.actors.cell import Cell

__all__ = ["current_cell", "wait_for_room", "wait_for_room_async", "would_deadlock"]

_monotonic = time.monotonic
_MAX_HOPS = 1000

current_cell: ContextVar[Cell | None] = ContextVar("taskmesh_current_cell", default=None)
"""The actor whose code runs in this thread (a threaded actor) or task (an
async actor); read only on the slow path, when a mailbox is full."""


def would_deadlock(sender: Cell, target: Cell) -> bool:
    """Whether ``sender`` waiting for room in ``target`` closes a cycle of
    waiting actors. Sets ``sender.waiting_for``; the caller clears it."""
    if sender is target:
        return True
    sender.waiting_for = target
    cell = target.waiting_for
    hops = 0
    while cell is not None and hops < _MAX_HOPS:
        if cell is sender:
            return True
        cell = cell.waiting_for
        hops += 1
    return False


def refuse(target: Cell, message: Any, *, ask: bool, why: str = "") -> MailboxFull:
    """The error for a send that found no room; a tell is a dead letter."""
    mailbox = target.mailbox
    if not ask:
        target.system.dead_letters.record(target.name, message, "mailbox_full", why)
    return MailboxFull(
        f"mailbox of {target.name!r} is full ({mailbox.capacity} messages){why and ': ' + why}"
    )


def wait_for_room(target: Cell, message: Any, *, timeout: float, ask: bool) -> None:
    """Block the calling thread until ``target``'s mailbox has room, then
    return (the caller puts the message); a dead target returns at once
    (the caller's put then finds it dead). Raises :class:`MailboxFull`
    after ``timeout`` seconds, or at once in a thread that must not block.
    Any thread but the target's own consumer."""
    mailbox = target.mailbox
    sender = current_cell.get()
    if sender is not None and would_deadlock(sender, target):
        sender.waiting_for = None
        return  # waiting could never end: queue past the bound
    try:
        where = no_waiting_on(get_ident())
        if where is not None:
            raise refuse(target, message, ask=ask, why=f"cannot wait for room on {where}")
        deadline = _monotonic() + timeout
        while mailbox.qsize() >= mailbox.capacity and target.alive:
            remaining = deadline - _monotonic()
            if remaining <= 0:
                raise refuse(target, message, ask=ask, why=f"no room within {timeout:g} s")
            room = allocate_lock()
            room.acquire()
            if mailbox.on_space(room.release):
                room.acquire(True, remaining)
    finally:
        if sender is not None:
            sender.waiting_for = None


async def wait_for_room_async(target: Cell, message: Any, *, timeout: float, ask: bool) -> None:
    """:func:`wait_for_room` for a coroutine: suspends it, never its loop."""
    mailbox = target.mailbox
    sender = current_cell.get()
    if sender is not None and would_deadlock(sender, target):
        sender.waiting_for = None
        return
    try:
        loop = asyncio.get_running_loop()
        thread = get_ident()
        deadline = _monotonic() + timeout
        while mailbox.qsize() >= mailbox.capacity and target.alive:
            remaining = deadline - _monotonic()
            if remaining <= 0:
                raise refuse(target, message, ask=ask, why=f"no room within {timeout:g} s")
            room: asyncio.Future[None] = loop.create_future()

            def wake(room: asyncio.Future[None] = room) -> None:  # the consumer's thread
                if get_ident() == thread:
                    _settle(room)
                else:
                    loop.call_soon_threadsafe(_settle, room)

            if mailbox.on_space(wake):
                with suppress(TimeoutError):
                    await asyncio.wait_for(room, remaining)
    finally:
        if sender is not None:
            sender.waiting_for = None


def _settle(room: asyncio.Future[None]) -> None:
    if not room.done():
        room.set_result(None)
