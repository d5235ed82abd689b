"""Effect-once asks: the receiving node remembers recent idempotency keys.

An ask sent with ``idempotency_key=K`` (usually with ``retries``) may reach
the same actor more than once: the sender retries when it cannot tell
whether the first try was handled. The first delivery of ``(actor, K)``
runs; a repeat while it runs waits for the same answer; a repeat after it
answers gets the cached answer (value or error) without running again.

The memory is bounded (``capacity`` keys, least recently used dropped
first) and keys expire after ``ttl`` seconds. It lives in one process: an
actor re-created on another node starts with an empty memory.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from taskmesh.actors.future import ReplyTo

__all__ = ["IdempotencyCache", "admitted_key"]

_RUNNING = object()


class _Entry:
    __slots__ = ("error", "expires", "value", "waiters")

    def __init__(self, expires: float) -> None:
        self.expires = expires
        self.value: Any = _RUNNING
        self.error: BaseException | None = None
        self.waiters: list[ReplyTo] = []


class _Recorder:
    """The reply handle the actor answers through: records, then fans out.
    It keeps its key, so a message handed on unhandled (to another node)
    goes on with it: see :func:`admitted_key`."""

    __slots__ = ("_cache", "_entry", "key")

    def __init__(self, cache: IdempotencyCache, entry: _Entry, key: str) -> None:
        self._cache = cache
        self._entry = entry
        self.key = key

    def set(self, value: Any) -> None:
        self._cache._finish(self._entry, value, None)

    def fail(self, exc: BaseException) -> None:
        self._cache._finish(self._entry, None, exc)


def admitted_key(reply: ReplyTo | None) -> str | None:
    """The idempotency key ``reply`` was admitted with, or None if it is no
    admitted first delivery. A message handed on unhandled (an activation
    stopped early, its shard moving) goes on with it, so a retry with the
    same key at the next node is not run a second time."""
    return reply.key if type(reply) is _Recorder else None


class IdempotencyCache:
    """Recent ``(actor, key)`` answers of one node; thread-safe.

    ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        *,
        capacity: int = 10_000,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self.hits = 0

    def admit(self, actor: str, key: str, reply: ReplyTo) -> ReplyTo | None:
        """Decide a delivery of ``(actor, key)`` (any thread).

        Returns the reply handle to queue the message with when it must run
        (first delivery), or None when ``reply`` was answered or attached to
        the running first delivery (a repeat: do not queue it).
        """
        now = self._clock()
        with self._lock:
            self._expire(now)
            entry = self._entries.get((actor, key))
            if entry is not None and entry.expires <= now and entry.value is not _RUNNING:
                del self._entries[(actor, key)]
                entry = None
            if entry is None:
                entry = _Entry(now + self.ttl)
                entry.waiters.append(reply)
                self._entries[(actor, key)] = entry
                if len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
                return _Recorder(self, entry, key)
            if type(reply) is _Recorder and reply._entry is entry:
                return reply  # the first delivery, queued again (a new activation here)
            self._entries.move_to_end((actor, key))
            self.hits += 1
            if entry.value is _RUNNING and entry.error is None:
                entry.waiters.append(reply)
                return None
            value, error = entry.value, entry.error
        if error is not None:
            reply.fail(error)
        else:
            reply.set(value)
        return None

    def forget(self, actor: str, key: str) -> None:
        """Drop a key whose first delivery never ran (it could not be queued)."""
        with self._lock:
            self._entries.pop((actor, key), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _finish(self, entry: _Entry, value: Any, error: BaseException | None) -> None:
        with self._lock:
            if entry.value is not _RUNNING or entry.error is not None:
                return
            entry.value, entry.error = value, error
            waiters, entry.waiters = entry.waiters, []
        for waiter in waiters:
            if error is not None:
                waiter.fail(error)
            else:
                waiter.set(value)

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, oldest = next(iter(entries.items()))
            if oldest.expires > now:
                return
            if oldest.value is _RUNNING and oldest.error is None:
                return  # still running: keep it (and everything younger)
            del entries[key]
