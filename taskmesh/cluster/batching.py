"""`GroupCommit`: requests from many threads, committed to etcd in batches.

A caller submits its request and blocks until it is done. If no batch is
being committed, the caller commits one itself: its own request and every
request queued meanwhile, up to ``max_batch``. Requests that arrive while a
batch is in flight wait for the next one, which the first of them commits.
A lone caller pays one round trip, as before; many concurrent callers share
round trips (one etcd transaction per batch), with no thread of its own
and no added latency.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

_Req = TypeVar("_Req")
_Res = TypeVar("_Res")


class _Slot(Generic[_Req, _Res]):
    __slots__ = ("done", "error", "request", "result", "turn")

    def __init__(self, request: _Req) -> None:
        self.request = request
        self.done = False
        self.turn = False  # this waiter commits the next batch
        self.result: _Res | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[_Req, _Res]):
    """Batches calls to ``commit(requests) -> results`` (same order) across threads.

    ``commit`` runs on one submitting thread at a time; if it raises, every
    request of that batch raises the same error.
    """

    def __init__(
        self, commit: Callable[[Sequence[_Req]], Sequence[_Res]], *, max_batch: int = 64
    ) -> None:
        self._commit = commit
        self._max = max_batch
        self._cond = threading.Condition()
        self._queue: list[_Slot[_Req, _Res]] = []
        self._busy = False
        self.batches = 0
        """Batches committed so far (for tests and benchmarks)."""

    def submit(self, request: _Req) -> _Res:
        """Commit ``request`` (with whatever else is queued); the caller's thread."""
        slot: _Slot[_Req, _Res] = _Slot(request)
        with self._cond:
            self._queue.append(slot)
            while self._busy and not (slot.done or slot.turn):
                self._cond.wait()
            if slot.done:
                return self._outcome(slot)
            # Our turn: the queue is empty or starts with us (see the hand-over).
            self._busy = True
            batch = self._queue[: self._max]
            del self._queue[: self._max]
        self._run(batch)
        with self._cond:
            if self._queue:
                self._queue[0].turn = True  # hand over: the first waiter commits next
            else:
                self._busy = False
            self._cond.notify_all()
        return self._outcome(slot)

    def _run(self, batch: list[_Slot[_Req, _Res]]) -> None:
        try:
            results = self._commit([s.request for s in batch])
        except BaseException as exc:
            for s in batch:
                s.error = exc
        else:
            for s, result in zip(batch, results, strict=True):
                s.result = result
        self.batches += 1
        with self._cond:
            for s in batch:
                s.done = True

    @staticmethod
    def _outcome(slot: _Slot[_Req, _Res]) -> _Res:
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]
