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
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import taskmesh
from taskmesh.cluster import EmbeddedEtcd
from tests.faults.entity_traffic import Traffic, check_records, finish, overlaps
from tests.integration.entities.conftest import Fleet
from tests.postgres import postgres_server
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

STEPS = int(os.environ.get("ENTITY_KILL_STEPS", "4"))


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
        finish(client, traffic)
    finally:
        if traffic is not None:
            traffic.stop()
        if client is not None:
            client.close()
        fleet.close()
        etcd.close()
    check_records(records)


def test_the_checker_finds_two_activations_that_overlap(tmp_path: Path) -> None:
    records = tmp_path / "records"
    records.write_text(
        "A e1 n1 x 1.0\nM e1 n1 x 2.0\nP e1 n1 x 2.5\n"  # x lives 1.0-2.5
        "A e1 n2 y 3.0\nM e1 n2 y 4.0\n"  # y after it: fine
        "A e1 n3 z 3.5\n"  # z starts while y lives
        "A e2 n1 w 1.0\nM e2 n1 w 9.0\n"
    )
    assert overlaps(records) == ["e1: z started 0.500 s before y ended"]
