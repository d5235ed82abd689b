"""The actors and entities of ``benchmarks/entities.py``.

``taskmesh node --app benchmarks.entity_apps:setup`` hosts:

- ``bench`` entities (not persistent, never passivated): each counts the
  messages this node's ``bench`` entities received and answers the message;
- ``echo-<node>-<i>`` (``PER_NODE`` of them): async named actors (the same
  light-actor machinery as entities) that count the same way and answer
  the message: the baseline the entities' message path is compared with;
- ``stats-<node>``: answers the two counts, and the process's RSS.
"""

from __future__ import annotations

import gc
from typing import Any

import psutil

import taskmesh
from taskmesh.node import Node

COUNTS = {"entity": 0, "named": 0}
PER_NODE = 333


class Bench(taskmesh.Entity):
    entity_type = "bench"
    idle_timeout = None

    async def receive(self, message: Any) -> Any:
        COUNTS["entity"] += 1
        return message


class Echo(taskmesh.Actor):
    async def receive(self, message: Any) -> Any:
        COUNTS["named"] += 1
        return message


class Stats(taskmesh.Actor):
    def receive(self, message: Any) -> Any:
        if message == "gc":
            gc.collect()
        return {**COUNTS, "rss": psutil.Process().memory_info().rss}


def setup(node: Node) -> None:
    node.host(Bench)
    node.spawn_many(Echo, [f"echo-{node.node_id}-{i}" for i in range(PER_NODE)])
    node.spawn(Stats, name=f"stats-{node.node_id}")
