"""The README's five-minute tour: ``--app examples.tour:setup`` gives each
node an echo actor named ``echo-<node>`` that holds the ``echo`` capability."""

from __future__ import annotations

from typing import Any

import taskmesh


class Echo(taskmesh.Actor):
    capabilities = ("echo",)

    def receive(self, message: Any) -> dict[str, Any]:
        return {"echo": message, "from": self.node.node_id}


def setup(node: taskmesh.Node) -> None:
    node.spawn(Echo, name=f"echo-{node.node_id}")
