"""``--app`` functions for the fault suite's node processes."""

from __future__ import annotations

import os
import threading
from typing import Any

import taskmesh
from taskmesh.node import Node
from tests.integration.node.apps import Gate, Gated


class Counter(taskmesh.Actor):
    """Applies an effect per key and answers how often this process applied it.

    The answer carries the node and pid, so a test can tell an answer from
    memory (same process, ``applied`` still 1) from a second application.
    """

    capabilities = ("counter",)

    def __init__(self) -> None:
        super().__init__()
        self.applied: dict[str, int] = {}

    def receive(self, message: Any) -> Any:
        key = str(message["key"])
        self.applied[key] = self.applied.get(key, 0) + 1
        return {"key": key, "applied": self.applied[key], "node": _node(), "pid": os.getpid()}


class Relay(taskmesh.Actor):
    """Asks the actor ``message["to"]`` by name from this node and returns its answer."""

    def receive(self, message: Any) -> Any:
        return self.node.ref(str(message["to"])).ask(message["message"], timeout=5.0)


class Echo(taskmesh.Actor):
    """Answers with the message and the node it ran on."""

    def receive(self, message: Any) -> Any:
        return {"echo": message, "node": _node()}


def _node() -> str:
    return os.environ.get("TASKMESH_TEST_NODE", "?")


def counter(node: Node) -> None:
    """A ``counter`` capability holder, plus ``echo-<node>`` and ``relay-<node>``."""
    node.spawn(Counter, name=f"counter-{node.node_id}")
    node.spawn(Echo, name=f"echo-{node.node_id}")
    node.spawn(Relay, name=f"relay-{node.node_id}")


class Spawner(taskmesh.Actor):
    """``{"spawn": NAME}`` spawns an `Echo` named NAME on this node and answers
    ``"spawned"``, or the error's type and text; ``"local"`` answers the names
    of this node's live actors."""

    def receive(self, message: Any) -> Any:
        if message == "local":
            return self.node.system.names()
        try:
            self.node.spawn(Echo, name=str(message["spawn"]))
        except taskmesh.TaskmeshError as error:
            return {"error": type(error).__name__, "text": str(error)}
        return "spawned"


def spawner(node: Node) -> None:
    """A `Spawner` named ``spawner-<node>``."""
    node.spawn(Spawner, name=f"spawner-{node.node_id}")


class Sink(taskmesh.Actor):
    """Records the ``seq`` of every tell; ``"seen"`` answers them as sorted
    ``[first, last]`` runs (short, however long the run was)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def receive(self, message: Any) -> Any:
        if message == "seen":
            runs: list[list[int]] = []
            for seq in sorted(set(self.seen)):
                if runs and runs[-1][1] == seq - 1:
                    runs[-1][1] = seq
                else:
                    runs.append([seq, seq])
            return runs
        self.seen.append(int(message["seq"]))
        return None


class Ledger(Counter):
    """A `Counter` that also answers ``"twice"`` with the keys it applied more
    than once (the chaos run looks for them)."""

    def receive(self, message: Any) -> Any:
        if message == "twice":
            return {key: n for key, n in self.applied.items() if n > 1}
        return super().receive(message)


def chaos(node: Node) -> None:
    """The chaos run's actors: ``ledger-<node>`` (capability ``counter``),
    ``sink-<node>``, ``gated-<node>`` (mailbox 200) and ``gate-<node>``."""
    gate = threading.Event()
    gate.set()
    node.spawn(Ledger, name=f"ledger-{node.node_id}")
    node.spawn(Sink, name=f"sink-{node.node_id}")
    node.spawn(Gated, gate, name=f"gated-{node.node_id}", mailbox_size=200)
    node.spawn(Gate, gate, name=f"gate-{node.node_id}")
