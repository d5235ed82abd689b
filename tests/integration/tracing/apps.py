"""``--app`` functions of the tracing test's two nodes."""

from __future__ import annotations

from typing import Any

import taskmesh
from taskmesh.node import Node


class Front(taskmesh.Actor):
    """On node a: tells and asks ``back`` on node b, and answers with that."""

    capabilities = ("front",)

    def receive(self, message: Any) -> Any:
        if isinstance(message, dict) and "fail" in message:
            raise ValueError(message["fail"])
        self.node.ref("back").tell({"seen": message})
        return self.node.ref("back").ask(message, timeout=10.0)


class Back(taskmesh.Actor):
    """On node b, an async actor: runs on the node's event loop."""

    capabilities = ("back",)

    async def receive(self, message: Any) -> Any:
        return {"back": message, "node": self.node.node_id}


class Work(taskmesh.Actor):
    """One on each node: answers with its node's id."""

    capabilities = ("work",)

    def receive(self, message: Any) -> Any:
        return self.node.node_id


def node_a(node: Node) -> None:
    node.spawn(Front, name="front")
    node.spawn(Work, name=f"work-{node.node_id}")


def node_b(node: Node) -> None:
    node.spawn(Back, name="back")
    node.spawn(Work, name=f"work-{node.node_id}")


class Meter(taskmesh.Entity):
    """A sharded entity on the entities' node: counts what it is told."""

    entity_type = "meter"

    def on_activate(self) -> None:
        self.readings = 0

    async def receive(self, message: Any) -> Any:
        self.readings += 1
        return {"meter": self.entity_id, "readings": self.readings}


def entities(node: Node) -> None:
    node.host(Meter)
