"""One-shot replies: how an answer travels back to an asker.

A :class:`Reply` is a lock that the asker holds from creation and the
replier releases: the cheapest cross-thread wake-up CPython offers (cheaper
than ``threading.Event`` or ``Condition``), which matters because every ask
makes one.
"""

from __future__ import annotations

from _thread import allocate_lock, get_ident
from collections.abc import Callable
from typing import Any, Protocol

from taskmesh.errors import ActorError, AskTimeout

__all__ = ["Reply", "ReplyTo", "forbid_waiting"]


class ReplyTo(Protocol):
    """Where an actor's answer goes: a local :class:`Reply`, or a handle of
    the transport that sends it back to a remote asker.

    ``set`` or ``fail`` is called at most once, from the answering actor's
    thread (or from whichever thread finds the message undeliverable).
    """

    def set(self, value: Any) -> None: ...

    def fail(self, exc: BaseException) -> None: ...


_UNSET: Any = object()

_no_waiting: set[int] = set()
"""Threads that must never block on a reply (a transport's I/O thread)."""


def forbid_waiting(thread_id: int, forbid: bool = True) -> None:
    """Make :meth:`Reply.get` raise instead of blocking in thread
    ``thread_id`` (or allow it again). A transport's I/O thread is such a
    thread: an inline actor asking from it would wait for a reply only that
    thread can read."""
    if forbid:
        _no_waiting.add(thread_id)
    else:
        _no_waiting.discard(thread_id)


class Reply:
    """A one-shot future for an ask.

    ``get`` runs in the asker's thread; ``set``/``fail`` in the replier's.
    A late answer after the asker gave up is kept and ignored.
    """

    __slots__ = ("_callbacks", "_error", "_lock", "_value")

    def __init__(self) -> None:
        self._lock = allocate_lock()
        self._lock.acquire()
        self._value: Any = _UNSET
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[Reply], None]] | None = None

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
        if _no_waiting and get_ident() in _no_waiting and not self.done():
            raise ActorError(
                "cannot wait for a reply on the transport's I/O thread: an inline "
                "actor must not block; use tell or ask_async"
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
