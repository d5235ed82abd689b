"""``--app`` functions for node processes in the entity tests.

``Device`` keeps, in its persisted state, the sequence numbers it was sent
(each once, in arrival order); every answer says which node and which
activation answered. With ``TM_ENTITY_RECORDS`` set, every activation,
handled message and passivation is appended to that file, one line each,
written straight to the file (no buffer a ``kill -9`` could lose): the
kill loop's checker reads them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from typing import Any

import taskmesh
from taskmesh.node import Node

NODE = os.environ.get("TASKMESH_TEST_NODE", "?")


class _Records:
    def __init__(self) -> None:
        path = os.environ.get("TM_ENTITY_RECORDS")
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if path else -1

    def write(self, *fields: object) -> None:
        if self.fd >= 0:
            line = " ".join(str(f) for f in (*fields, f"{time.monotonic():.6f}")) + "\n"
            os.write(self.fd, line.encode())


RECORDS = _Records()


class Device(taskmesh.Entity):
    """``{"op": "add", "seq": n}`` records ``n`` once and saves; ``{"op":
    "get"}`` answers the state; both say where they ran."""

    entity_type = "device"
    idle_timeout = 1.0
    persistent = True
    shards = 32

    def initial_state(self) -> Any:
        return {"seen": []}

    def on_activate(self) -> None:
        self.activation = secrets.token_hex(4)
        RECORDS.write("A", self.entity_id, NODE, self.activation)

    def on_passivate(self) -> None:
        RECORDS.write("P", self.entity_id, NODE, self.activation)

    async def receive(self, message: Any) -> Any:
        RECORDS.write("M", self.entity_id, NODE, self.activation)
        if message["op"] == "add":
            seen = self.state["seen"]
            if message["seq"] not in seen:
                seen.append(message["seq"])
                await self.save()
        return {"node": NODE, "activation": self.activation, "seen": self.state["seen"]}


class Counter(taskmesh.Entity):
    """Not persistent, with a plain ``def receive``: counts its messages."""

    entity_type = "counter"
    idle_timeout = None

    def on_activate(self) -> None:
        self.count = 0

    def receive(self, message: Any) -> Any:
        self.count += 1
        return {"node": NODE, "count": self.count}


def fleet(node: Node) -> None:
    """Host ``Device`` (state in etcd, or in PostgreSQL when
    ``TM_ENTITY_PG`` holds a DSN) and ``Counter``."""
    dsn = os.environ.get("TM_ENTITY_PG")
    node.host(Device, store=taskmesh.PostgresStore(dsn) if dsn else None)
    node.host(Counter)


class Slow(taskmesh.Entity):
    """Takes about a millisecond per message and counts them, in order."""

    entity_type = "slow"
    idle_timeout = None

    def on_activate(self) -> None:
        self.count = 0
        self.out_of_order = 0

    async def receive(self, message: Any) -> Any:
        if message == "count":
            return {"count": self.count, "out_of_order": self.out_of_order}
        if message != self.count:
            self.out_of_order += 1
        self.count += 1
        await asyncio.sleep(0.001)
        return None


def slow(node: Node) -> None:
    """Host ``Slow`` only (with a small mailbox from the node's config)."""
    node.host(Slow)


class Ledger(taskmesh.Entity):
    """Persistent: ``"add"`` counts one run and saves; ``"block"`` waits
    until its activation is stopped; every answer says where it ran and how
    many runs the state holds."""

    entity_type = "ledger"
    idle_timeout = None
    persistent = True
    shards = 8

    def initial_state(self) -> Any:
        return {"runs": 0}

    async def receive(self, message: Any) -> Any:
        if message == "block":
            await asyncio.Event().wait()  # until the activation is stopped
        elif message == "add":
            self.state["runs"] += 1
            await self.save()
        return {"node": NODE, "runs": self.state["runs"]}


def ledger(node: Node) -> None:
    """Host ``Ledger`` only (state in etcd)."""
    node.host(Ledger)
