"""`ShardPlacer`: the leader's duty of assigning every entity type's shards.

Runs on every node (a thread, ``taskmesh-entity-placer``) and acts only
while the node leads, through the election's fence: every write is a
transaction guarded by the leader key's revision, so a deposed leader that
has not noticed yet writes nothing.

Each round, per type, it applies :func:`~taskmesh.entities.plan.plan_shards`:

- an **unassigned** shard is given to a node by creating its key under
  that node's lease (only if the key is absent: one owner at a time). If
  its last owner handed it over (a ``released`` handoff record), that is at
  once; otherwise the owner's lease expired, and the shard waits
  ``margin`` seconds after this leader saw it free (see
  :mod:`~taskmesh.entities.host` for why that fences the old owner);
- an owner above its quota is asked to hand shards over (a handoff
  record); it releases them itself, and the next round assigns them.

A round that changed anything is recorded at ``rebalances/<type>``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from taskmesh.cluster.etcd import Compare, Delete, Op, Put
from taskmesh.entities.layout import Assignment, Handoff, Rebalance
from taskmesh.entities.plan import plan_shards
from taskmesh.errors import ClusterError, FencingError

if TYPE_CHECKING:
    from taskmesh.cluster.election import Election, Fence
    from taskmesh.entities.service import Entities

__all__ = ["ShardPlacer"]

log = logging.getLogger("taskmesh.entities.placer")

_BATCH = 32
"""Shards per transaction (etcd takes 128 operations per list by default)."""
_SETTLE = 0.02
"""Seconds a round waits after a wake-up, so that one round sees a burst."""


class ShardPlacer:
    """See the module docstring. ``margin`` is the wait after an owner's
    lease expired (for clock rate differences between machines)."""

    def __init__(self, entities: Entities, election: Election, *, margin: float = 0.25) -> None:
        self._entities = entities
        self._election = election
        self.margin = margin
        self._seen_free: dict[tuple[str, int], float] = {}
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._due = 0.0
        entities.map.subscribe(lambda entity_type: self._wake.set())
        election.subscribe(on_elected=lambda fence: self._wake.set())

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="taskmesh-entity-placer", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None

    def _run(self) -> None:
        while not self._halt.is_set():
            wait = 2.0 if not self._due else max(0.0, min(2.0, self._due - time.monotonic()))
            if self._wake.wait(wait):
                self._halt.wait(_SETTLE)  # let a burst of changes (a node's handoffs) land
            self._wake.clear()
            fence = self._election.fence
            if fence is None or self._halt.is_set():
                self._seen_free.clear()
                continue
            self._due = 0.0
            try:
                for entity_type in self._entities.map.types():
                    self._place(fence, entity_type)
            except FencingError:
                log.info("no longer the leader: stopped placing entity shards")
            except ClusterError as error:
                log.info("placing entity shards failed (will retry): %s", error)
                self._halt.wait(0.25)
                self._wake.set()

    def _place(self, fence: Fence, entity_type: str) -> None:
        entities = self._entities
        keys = entities.keys
        hosts, assigned, handoffs, shards = entities.map.snapshot(entity_type)
        if not shards:
            return
        eligible = [node for node, host in hosts.items() if host.lease and not host.draining]
        owners = {shard: a.node for shard, a in assigned.items() if shard < shards}
        releasing = {
            shard
            for shard, handoff in handoffs.items()
            if not handoff.released and owners.get(shard) == handoff.source
        }
        plan = plan_shards(shards, eligible, owners, releasing)
        now = time.monotonic()
        for shard in owners:
            self._seen_free.pop((entity_type, shard), None)
        ready: list[tuple[int, str]] = []
        for shard, node in sorted(plan.assign.items()):
            handoff = handoffs.get(shard)
            seen = self._seen_free.setdefault((entity_type, shard), now)
            if (handoff is not None and handoff.released) or now - seen >= self.margin:
                ready.append((shard, node))
            else:
                due = seen + self.margin
                self._due = due if not self._due else min(self._due, due)
        assigned_now = 0
        for start in range(0, len(ready), _BATCH):
            batch = ready[start : start + _BATCH]
            compare = [Compare(keys.shard(entity_type, s), "create", "==", 0) for s, _ in batch]
            ops: list[Op] = []
            for shard, node in batch:
                host = hosts[node]
                value = Assignment.value(node, host.address)
                ops.append(Put(keys.shard(entity_type, shard), value, host.lease))
                if shard in handoffs:
                    ops.append(Delete(keys.handoff(entity_type, shard)))
            if not fence.txn(ops, compare=compare).succeeded:
                log.debug("shards of %r changed meanwhile; placing again", entity_type)
                self._wake.set()
                break
            assigned_now += len(batch)
        asked: list[Op] = []
        for shard, target in sorted(plan.release.items()):
            source = owners[shard]
            handoff = handoffs.get(shard)
            if handoff is not None and handoff.source == source and not handoff.released:
                continue
            record = Handoff(shard, source, target, released=False)
            asked.append(Put(keys.handoff(entity_type, shard), record.to_bytes()))
        moved = len(asked)
        for shard, handoff in handoffs.items():  # asked of an owner that is gone meanwhile
            if not handoff.released and owners.get(shard) != handoff.source:
                asked.append(Delete(keys.handoff(entity_type, shard)))
        for start in range(0, len(asked), _BATCH * 2):
            fence.txn(asked[start : start + _BATCH * 2])
        if assigned_now or moved:
            log.debug(
                "entity type %r: assigned %d shards, asked %d to move (%d nodes)",
                entity_type, assigned_now, moved, len(eligible),
            )  # fmt: skip
            done = Rebalance(time.time(), entities.node_id, assigned_now, moved)
            fence.put(keys.rebalance(entity_type), done.to_bytes())
