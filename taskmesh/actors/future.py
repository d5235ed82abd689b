"""One-shot replies: how an answer travels back to an asker.

A :class:`Reply` is a lock that the asker holds from creation and the
replier releases: the cheapest cross-thread wake-up CPython offers (cheaper
than ``threading.Event`` or ``Condition``), which matters because every ask
makes one. It is also awaitable from any asyncio event loop: the awaiting
task is woken directly when the answer comes from the loop's own thread,
and through ``call_soon_threadsafe`` only when it comes from another one.
"""

from __future__ import annotations

import asyncio
from _thread import allocate_lock, get_ident
from collections.abc import Callable, Generator
from typing import Any, Protocol

from taskmesh.errors import ActorError, AskTimeout

__all__ = ["Reply", "ReplyTo", "forbid_waiting", "no_waiting_on"]


class ReplyTo(Protocol):
    """Where an actor's answer goes: a local :class:`Reply`, or a handle of
    the transport that sends it back to a remote asker.

    ``set`` or ``fail`` is called at most once, from the answering actor's
    thread (or from whichever thread finds the message undeliverable).
    """

    def set(self, value: Any) -> None: ...

    def fail(self, exc: BaseException) -> None: ...


_UNSET: Any = object()

_no_waiting: dict[int, str] = {}
"""Threads that must never block (on a reply or on a full mailbox), with
what they are: a transport's I/O thread, an actor system's event loop."""

_ADVICE = {
    "the transport's I/O thread": "an inline actor must not block; use tell or ask_async",
    "the actor system's event loop": "use `await ref.ask_async(...)` in async code",
}


def forbid_waiting(
    thread_id: int, forbid: bool = True, *, what: str = "the transport's I/O thread"
) -> None:
    """Make :meth:`Reply.get` (and a tell to a full mailbox) raise instead
    of blocking in thread ``thread_id``, or allow it again. A transport's
    I/O thread is such a thread (an inline actor asking from it would wait
    for a reply only that thread can read), and so is an event loop (a
    blocked loop runs none of its actors)."""
    if forbid:
        _no_waiting[thread_id] = what
    else:
        _no_waiting.pop(thread_id, None)


def no_waiting_on(thread_id: int) -> str | None:
    """What thread ``thread_id`` is if it must never block, else None."""
    return _no_waiting.get(thread_id) if _no_waiting else None


class Reply:
    """A one-shot future for an ask.

    ``get`` runs in the asker's thread; ``set``/``fail`` in the replier's.
    A late answer after the asker gave up is kept and ignored. ``await
    reply`` works in any event loop; with a ``deadline`` (monotonic time,
    set by a local ``ask_async(timeout=...)``) it raises
    :class:`AskTimeout` once that passes.
    """

    __slots__ = ("_callbacks", "_error", "_lock", "_value", "deadline")

    def __init__(self, deadline: float | None = None) -> None:
        self._lock = allocate_lock()
        self._lock.acquire()
        self._value: Any = _UNSET
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[Reply], None]] | None = None
        self.deadline = deadline

    def set(self, value: Any) -> None:
        """Answer with ``value``; runs in the replier's thread."""
        if self._value is not _UNSET or self._error is not None:
            return
        self._value = value
        self._done()

    def fail(self, exc: BaseException) -> None:
        """Answer with an error the asker will see raised."""
        if self._value is not _UNSET or self._error is not None:
            return
        self._error = exc
        self._done()

    def _done(self) -> None:
        self._lock.release()
        if self._callbacks is not None:
            self._run_callbacks()

    def _run_callbacks(self) -> None:
        # Both the replier and a late add_done_callback may get here; list.pop
        # is atomic, so each callback runs exactly once.
        callbacks = self._callbacks
        while callbacks:
            try:
                callback = callbacks.pop(0)
            except IndexError:
                return
            callback(self)

    def done(self) -> bool:
        """Whether an answer (value or error) has arrived."""
        return self._value is not _UNSET or self._error is not None

    def add_done_callback(self, callback: Callable[[Reply], None]) -> None:
        """Call ``callback(reply)`` once answered: at once in this thread if it
        already is, else in the replier's thread. Keep callbacks short.
        Callbacks are added from one thread (the asker's)."""
        if self._callbacks is None:
            self._callbacks = []
        self._callbacks.append(callback)
        if self.done():
            self._run_callbacks()

    def get(self, timeout: float | None = None) -> Any:
        """Wait for the answer and return it (or raise the error).

        Raises :class:`AskTimeout` if no answer came within ``timeout``
        seconds (``None`` waits for ever).
        """
        value = self._value
        if value is not _UNSET:  # answered already: a remote sync ask's usual case
            return value
        if _no_waiting and get_ident() in _no_waiting and not self.done():
            where = _no_waiting[get_ident()]
            raise ActorError(
                f"cannot wait for a reply on {where}: {_ADVICE.get(where, 'it must not block')}"
            )
        lock = self._lock
        acquired = lock.acquire() if timeout is None else lock.acquire(True, max(timeout, 0.0))
        if not acquired:
            if not self.done():
                raise AskTimeout(f"no reply within {timeout:g} s")
        else:
            lock.release()  # let other waiters (and repeated get calls) through
        if self._error is not None:
            raise self._error
        return self._value

    def __await__(self) -> Generator[Any, None, Any]:
        """Wait for the answer without blocking the event loop (the
        awaiting task's thread)."""
        if not self.done():
            loop = asyncio.get_running_loop()
            woken = loop.create_future()
            thread = get_ident()

            def wake(_: Reply) -> None:  # the replier's thread
                if get_ident() == thread:
                    _settle(woken)
                else:
                    loop.call_soon_threadsafe(_settle, woken)

            timer = None
            if self.deadline is not None:
                timer = loop.call_at(self.deadline, _settle, woken)
            self.add_done_callback(wake)
            try:
                yield from woken
            finally:
                if timer is not None:
                    timer.cancel()
            if not self.done():
                raise AskTimeout("no reply within the ask's timeout")
        if self._error is not None:
            raise self._error
        return self._value


def _settle(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)
