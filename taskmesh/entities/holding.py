"""Held messages: what a sender keeps back for a shard, and the thread that lets it go.

A shard's messages are held (per shard, in order) while it has no owner,
while a barrier through its previous owner is on its way, or while this
node's view of the shard map is older than the assignment a message was
routed by. The flusher thread (``taskmesh-entities-router``) looks at a held
shard when something may have changed (a map change, a barrier's answer, a
host starting to serve it) and every 50 ms, sends the barrier when one is
needed, and then the held messages, in order, through the router. Held
messages past their deadline, or held 30 s without an owner, are refused.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING

from taskmesh.actors.future import Reply
from taskmesh.entities.shards import barrier_target
from taskmesh.errors import TaskmeshError

if TYPE_CHECKING:
    from taskmesh.entities.layout import Assignment
    from taskmesh.entities.ownership import Item
    from taskmesh.entities.router import EntityRouter
    from taskmesh.entities.service import Entities
    from taskmesh.entities.shardmap import TypeView

__all__ = ["RECHECK", "Flusher", "Lane", "Pending"]

log = logging.getLogger("taskmesh.entities")

_monotonic = time.monotonic

NONE, SENT, DONE = 0, 1, 2
"""A held shard's barrier: not sent (or not needed), on its way, answered."""
RECHECK = 0.05
"""Seconds before a held shard is looked at again when no event will wake it
(this node's host has not caught up with the map yet)."""


class Pending:
    """Messages held for one shard, in order, and what they wait for."""

    __slots__ = ("barrier", "barrier_state", "items", "recheck", "revision")

    def __init__(self) -> None:
        self.items: deque[Item] = deque()
        self.revision = 0  # the map must have reached this revision
        self.recheck = 0.0  # do not look again before this time
        self.barrier: Assignment | None = None  # the old owner to flush through
        self.barrier_state = NONE


class Lane:
    """The routing state of one entity type in this process."""

    __slots__ = ("locks", "name", "pending", "sent", "shards", "view")

    def __init__(self, view: TypeView) -> None:
        self.view = view
        self.name = view.name
        self.shards = view.shards
        self.locks = [threading.RLock() for _ in range(view.shards)]
        self.sent: list[Assignment | None] = [None] * view.shards
        """The assignment this process last sent each shard's messages by."""
        self.pending: dict[int, Pending] = {}


class Flusher:
    """The flusher thread of one router; see the module docstring."""

    def __init__(self, router: EntityRouter, entities: Entities) -> None:
        self._router = router
        self._entities = entities
        self._map = entities.map
        self._lock = threading.Lock()
        self._wakes: SimpleQueue[tuple[str, int] | None] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True
        self._wakes.put(None)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)

    def wake(self, entity_type: str, shard: int) -> None:
        """Look at ``shard`` soon (any thread); starts the thread on first use."""
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stopped:
                    self._thread = threading.Thread(
                        target=self._run, name="taskmesh-entities-router", daemon=True
                    )
                    self._thread.start()
        self._wakes.put((entity_type, shard))

    def on_map(self, entity_type: str) -> None:
        """The map changed (watch thread): held shards of the type may go."""
        lane = self._router.lanes.get(entity_type)
        if lane is not None:
            for shard in list(lane.pending):
                self._wakes.put((entity_type, shard))

    def _run(self) -> None:
        """The flusher thread (``taskmesh-entities-router``)."""
        last_scan = _monotonic()
        while not self._stopped:
            try:
                wake = self._wakes.get(timeout=RECHECK)
            except Empty:
                wake = None
            if wake is not None:
                lane = self._router.lanes.get(wake[0])
                if lane is not None:
                    self._flush(lane, wake[1])
            now = _monotonic()
            if now - last_scan >= RECHECK:
                last_scan = now
                for lane in list(self._router.lanes.values()):
                    for shard in list(lane.pending):
                        self._flush(lane, shard)

    def _flush(self, lane: Lane, shard: int) -> None:
        with lane.locks[shard]:
            pending = lane.pending.get(shard)
            if pending is None:
                return
            now = _monotonic()
            self._expire(lane, pending, now)
            if pending.barrier_state == SENT or now < pending.recheck:
                return
            if self._map.revision < pending.revision:
                return
            owner = lane.view.owner(shard)
            if owner is None:
                if not pending.items and pending.barrier is None:
                    del lane.pending[shard]
                return
            if pending.barrier_state == NONE:
                # Also when the shard had no owner for a while: what this process
                # sent to the previous one may still be on its way through it.
                last = pending.barrier or lane.sent[shard]
                if (
                    last is not None
                    and last.token != owner.token
                    and self._router.flush_through(last, owner)
                ):
                    pending.barrier = last
                    self._send_barrier(lane, shard, pending, owner)
                    return
            del lane.pending[shard]
            lane.sent[shard] = owner
            for item in pending.items:
                if shard in lane.pending:  # the host held it again: keep the order
                    self._router.hold_one(lane, shard, item, 0)
                else:
                    self._router.dispatch(lane, shard, owner, item, block=False)

    def _send_barrier(self, lane: Lane, shard: int, pending: Pending, owner: Assignment) -> None:
        old = pending.barrier
        assert old is not None
        pending.barrier_state = SENT
        ref = self._router.remote(lane, old, barrier_target(lane.name, owner.token, shard))

        def done(_: Reply) -> None:  # the replier's thread
            pending.barrier_state = DONE
            self._wakes.put((lane.name, shard))

        try:
            answer = ref.ask_async(None, timeout=self._router.barrier_timeout)
        except TaskmeshError:
            pending.barrier_state = DONE
            self._wakes.put((lane.name, shard))
            return
        answer.add_done_callback(done)

    def _expire(self, lane: Lane, pending: Pending, now: float) -> None:
        items = pending.items
        if not items:
            return
        limit = now - self._router.buffer_timeout
        if not any(
            (deadline is not None and deadline <= now) or (deadline is None and since <= limit)
            for _, _, _, deadline, _, since in items
        ):
            return
        kept: deque[Item] = deque()
        for item in items:
            deadline, since = item[3], item[5]
            if deadline is not None and deadline <= now:
                self._entities.refuse(lane.name, item, "expired")
            elif deadline is None and since <= limit:
                self._entities.refuse(lane.name, item, "no_shard_owner")
            else:
                kept.append(item)
        pending.items = kept
