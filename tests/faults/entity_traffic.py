"""Traffic to sharded entities and the checker of their records, shared by
the entity fault tests (kill loop, partition).

``Traffic`` runs client threads that ask ``device`` entities to record
fresh sequence numbers (with retries and idempotency keys) and remembers
which were acknowledged. ``overlaps`` reads the records the nodes wrote
(``TM_ENTITY_RECORDS``, see ``tests/integration/entities/apps.py``) and
names the activations of one id whose lives overlap: an activation lives
from ``on_activate`` to its last handled message or its ``on_passivate``.
"""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import taskmesh
from tests.waiting import wait_until

__all__ = ["IDS", "Traffic", "check_state", "overlaps"]

IDS = [f"e{i}" for i in range(16)]
WORKERS = 2


class Traffic:
    """Client threads asking ``add`` with a fresh sequence number per id."""

    def __init__(self, client: taskmesh.Client) -> None:
        self.client = client
        self.acked: dict[str, set[int]] = defaultdict(set)
        self.errors: list[BaseException] = []
        self.answers = 0
        self._seqs = {i: itertools.count() for i in IDS}
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(w,), daemon=True) for w in range(WORKERS)
        ]

    def _run(self, worker: int) -> None:
        for n in itertools.count(worker):
            if self._halt.is_set():
                return
            entity_id = IDS[n % len(IDS)]
            with self._lock:
                seq = next(self._seqs[entity_id])
            try:
                answer = self.client.entity("device", entity_id).ask(
                    {"op": "add", "seq": seq},
                    timeout=30.0,
                    retries=60,
                    idempotency_key=f"{entity_id}:{seq}",
                )
            except BaseException as error:  # reported by the test thread
                self.errors.append(error)
                return
            assert seq in answer["seen"], answer
            with self._lock:
                self.acked[entity_id].add(seq)
                self.answers += 1

    def more(self, count: int) -> None:
        """Wait until ``count`` further asks are answered; fail on an error."""
        seen = self.answers
        wait_until(
            lambda: self.answers >= seen + count or self.errors, 60, message=f"{count} answers"
        )
        assert not self.errors, self.errors

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._halt.set()
        for thread in self._threads:
            thread.join(60)


def overlaps(records: Path) -> list[str]:
    """Activations of one id whose lives overlap (see the module docstring)."""
    lives: dict[tuple[str, str], list[float]] = {}  # (id, activation) -> [start, end]
    for line in records.read_text().splitlines():
        kind, entity_id, _node, activation, stamp = line.split()
        at = float(stamp)
        life = lives.setdefault((entity_id, activation), [at, at])
        if kind == "A":
            life[0] = min(life[0], at)
        life[1] = max(life[1], at)
    by_id: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for (entity_id, activation), (start, end) in lives.items():
        by_id[entity_id].append((start, end, activation))
    found = []
    for entity_id, spans in by_id.items():
        spans.sort()
        for (_, end, a), (start, _, b) in itertools.pairwise(spans):
            if start < end:
                found.append(f"{entity_id}: {b} started {end - start:.3f} s before {a} ended")
    return found


def finish(client: taskmesh.Client, traffic: Traffic) -> None:
    """Let 40 more asks be answered, stop, and check the saved state."""
    traffic.more(40)
    traffic.stop()
    assert not traffic.errors, traffic.errors
    check_state(client, traffic)


def check_records(records: Path) -> None:
    """The nodes wrote records, and no id had two overlapping activations."""
    assert records.exists() and records.stat().st_size > 0
    assert overlaps(records) == []


def check_state(client: taskmesh.Client, traffic: Traffic) -> None:
    """Every acknowledged sequence number is in its entity's saved state, once."""
    for entity_id in IDS:
        state = client.entity("device", entity_id).ask({"op": "get"}, timeout=30.0, retries=30)
        seen: list[Any] = state["seen"]
        assert traffic.acked[entity_id] <= set(seen), f"{entity_id} lost saved state"
        assert len(seen) == len(set(seen)), f"{entity_id} applied a sequence number twice"
