"""ActorLoop: the asyncio event loop that runs an actor system's async actors.

One thread per actor system runs the loop; it is started with the first
async actor (a system with only threaded actors pays nothing for it). Cells
with work are handed to it through a ready queue: producers on other
threads (actors' threads, the transport's I/O thread) put the cell there
and wake the loop with ``call_soon_threadsafe`` only when it is not already
woken, so a burst of messages to many actors costs one wake-up. On the
loop's own thread, a cell is scheduled with a plain ``call_soon``.

The loop thread never blocks: a sync ``ask`` (``Reply.get``) or a tell that
would wait for room raise a clear error there instead (``forbid_waiting``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from _thread import get_ident
from collections.abc import Coroutine
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any

from taskmesh.actors.future import Reply, forbid_waiting
from taskmesh.errors import ConfigError

if TYPE_CHECKING:
    from taskmesh.actors.loopcell import LoopCell

__all__ = ["ActorLoop"]

log = logging.getLogger("taskmesh.actors")

WHAT = "the actor system's event loop"


class ActorLoop:
    """The event loop of one actor system, on a thread of its own.

    ``schedule`` and ``submit`` may be called from any thread; ``start`` and
    ``stop`` from any thread but the loop's.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread_id = -1
        self._thread: threading.Thread | None = None
        self._ready: SimpleQueue[LoopCell] = SimpleQueue()
        self._woken = False
        self._stopped = False

    def start(self) -> asyncio.AbstractEventLoop:
        """Start the loop's thread if it is not running yet; return the loop."""
        loop = self.loop
        if loop is not None:  # every async spawn asks: skip the lock
            return loop
        with self._lock:
            if self.loop is not None:  # another thread started it meanwhile
                return self.loop
            if self._stopped:
                raise ConfigError("this actor system is stopped")
            loop = asyncio.new_event_loop()
            running = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(loop, running), name="taskmesh:loop", daemon=True
            )
            self._thread.start()
            running.wait()
            self.loop = loop
            return loop

    def _run(self, loop: asyncio.AbstractEventLoop, running: threading.Event) -> None:
        """The loop's thread."""
        asyncio.set_event_loop(loop)
        self.thread_id = get_ident()
        forbid_waiting(self.thread_id, what=WHAT)
        running.set()
        try:
            loop.run_forever()
        finally:
            try:
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                if tasks:
                    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                forbid_waiting(self.thread_id, False)
                loop.close()

    def schedule(self, cell: LoopCell) -> None:
        """Have the loop run ``cell._run()`` soon (any thread)."""
        loop = self.loop
        assert loop is not None
        if get_ident() == self.thread_id:
            cell._kick()
            return
        self._ready.put(cell)
        if not self._woken:
            self._woken = True
            try:
                loop.call_soon_threadsafe(self._take_ready)
            except RuntimeError:  # the loop is closed: the system stopped
                log.debug("message for %r after the event loop stopped", cell.name)

    def _take_ready(self) -> None:
        """Run every cell put in the ready queue (the loop). Producers that
        put while it runs see ``_woken`` set and do not wake the loop again;
        it is cleared only once the queue is found empty, and the queue is
        looked at once more after clearing it, so no put is stranded."""
        ready = self._ready
        get = ready.get
        while True:
            try:
                cell = get(False)
            except Empty:
                self._woken = False
                if ready.empty():
                    return
                self._woken = True
                continue
            try:
                cell._run()
            except Exception:
                log.critical("actor %r crashed inside the runtime", cell.name, exc_info=True)

    def submit(self, step: Coroutine[Any, Any, Any]) -> Reply:
        """Run ``step`` as a task on the loop; its outcome arrives in the
        returned reply (any thread)."""
        loop = self.start()
        reply = Reply()

        def begin() -> None:
            task = loop.create_task(step)
            task.add_done_callback(lambda done: _settle(reply, done))

        loop.call_soon_threadsafe(begin)
        return reply

    def stop(self, timeout: float) -> None:
        """Stop the loop (its remaining tasks are cancelled) and its thread
        (any thread but the loop's)."""
        with self._lock:
            self._stopped = True
            loop, thread = self.loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)


def _settle(reply: Reply, task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        reply.fail(ConfigError("the event loop stopped before the work was done"))
    elif task.exception() is not None:
        reply.fail(task.exception())  # type: ignore[arg-type]
    else:
        reply.set(task.result())
