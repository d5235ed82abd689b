"""Entities under faults: nodes killed and frozen while a client keeps asking.

Three nodes host ``device`` entities with their state in a real PostgreSQL
(the ``postgres`` store). Two client threads ask entities to record
sequence numbers (with retries and idempotency keys), while nodes are
killed with SIGKILL and one is frozen with SIGSTOP for longer than its
lease, then thawed. Every activation, handled message and passivation is
recorded by the node that ran it; afterwards a checker asserts:

- no entity id ever had two activations whose lives overlap (an activation
  lives from ``on_activate`` to its last handled message or its
  ``on_passivate``), also across the freeze;
- no persisted state was lost: every acknowledged sequence number is in
  the entity's state at the end, each once.

Short here (four faults, about 20 s). For a longer run, set the number of
faults: ``ENTITY_KILL_STEPS=40 .venv/bin/pytest tests/faults/test_entity_kill_loop.py``
(every fourth one a freeze).
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import taskmesh
from taskmesh.cluster import EmbeddedEtcd
from tests.integration.entities.conftest import Fleet
from tests.postgres import postgres_server
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

IDS = [f"e{i}" for i in range(16)]
WORKERS = 2
STEPS = int(os.environ.get("ENTITY_KILL_STEPS", "4"))


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


@pytest.fixture
def pg() -> Iterator[str]:
    with postgres_server() as dsn:
        yield dsn


def test_no_entity_is_active_twice_and_no_saved_state_is_lost_while_nodes_die_and_freeze(
    pg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = tmp_path / "records"
    monkeypatch.setenv("TM_ENTITY_RECORDS", str(records))
    monkeypatch.setenv("TM_ENTITY_PG", pg)
    etcd = EmbeddedEtcd().start()
    fleet = Fleet(etcd.endpoint)
    client: taskmesh.Client | None = None
    traffic: Traffic | None = None
    try:
        live = {slot: fleet.start(f"{slot}-0") for slot in ("a", "b", "c")}
        client = taskmesh.connect(etcd=fleet.etcd_url, cluster=fleet.cluster)
        traffic = Traffic(client)
        traffic.start()
        steps = itertools.islice(itertools.cycle(["kill", "freeze", "kill", "kill"]), STEPS)
        for step, (slot, action) in enumerate(zip(itertools.cycle("abc"), steps, strict=False)):
            traffic.more(40)
            victim = live[slot]
            if action == "freeze":
                victim.proc.send_signal(signal.SIGSTOP)  # a hung host: no reset, no drain
                frozen = time.monotonic()
                # Its lease (3 s) expires and its shards move while it is frozen.
                wait_until(
                    lambda v=victim: v.name not in fleet.shards(),  # type: ignore[misc]
                    30,
                    message=f"{victim.name}'s shards to move",
                )
                traffic.more(20)
                assert time.monotonic() - frozen > 3.0
                victim.proc.send_signal(signal.SIGCONT)
                continue
            victim.proc.kill()
            victim.proc.wait(10)
            live[slot] = fleet.start(f"{slot}-{step + 1}")
        traffic.more(40)
        traffic.stop()
        assert not traffic.errors, traffic.errors
        for entity_id in IDS:
            state = client.entity("device", entity_id).ask({"op": "get"}, timeout=30.0, retries=30)
            seen: list[Any] = state["seen"]
            assert traffic.acked[entity_id] <= set(seen), f"{entity_id} lost saved state"
            assert len(seen) == len(set(seen)), f"{entity_id} applied a sequence number twice"
    finally:
        if traffic is not None:
            traffic.stop()
        if client is not None:
            client.close()
        fleet.close()
        etcd.close()
    assert records.exists() and os.path.getsize(records) > 0
    assert overlaps(records) == []


def test_the_checker_finds_two_activations_that_overlap(tmp_path: Path) -> None:
    records = tmp_path / "records"
    records.write_text(
        "A e1 n1 x 1.0\nM e1 n1 x 2.0\nP e1 n1 x 2.5\n"  # x lives 1.0-2.5
        "A e1 n2 y 3.0\nM e1 n2 y 4.0\n"  # y after it: fine
        "A e1 n3 z 3.5\n"  # z starts while y lives
        "A e2 n1 w 1.0\nM e2 n1 w 9.0\n"
    )
    assert overlaps(records) == ["e1: z started 0.500 s before y ended"]
