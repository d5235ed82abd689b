"""`Jobs`: one thread that runs a node's entity chores, now or later.

Taking and handing over shards means etcd and store calls that block, and
waits that must not hold the watch thread, the I/O thread or the event
loop: they run here, one at a time, in due order. A job that raises is
logged and dropped (jobs that must succeed reschedule themselves).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Jobs"]

log = logging.getLogger("taskmesh.entities")


class Jobs:
    """A thread (``taskmesh-entities``) running submitted callables."""

    def __init__(self, name: str = "taskmesh-entities") -> None:
        self._name = name
        self._heap: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def submit(self, job: Callable[..., Any], *args: Any, delay: float = 0.0) -> None:
        """Run ``job(*args)`` on the thread after ``delay`` seconds (any thread)."""
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), job, args))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def stop(self, timeout: float = 5.0) -> None:
        """Drop what is not due yet and stop the thread (idempotent)."""
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    if self._heap:
                        wait = self._heap[0][0] - time.monotonic()
                        if wait <= 0:
                            _, _, job, args = heapq.heappop(self._heap)
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
            try:
                job(*args)
            except Exception:
                log.exception("entity job %r failed", job)
