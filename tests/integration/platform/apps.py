"""``--app`` functions the platform integration tests start nodes with."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import taskmesh
from taskmesh.node import Node


class Worker(taskmesh.Actor):
    """Answers with its message; ``{"sleep": s}`` waits first, ``{"job": id}``
    records one effect in the ledger, ``{"fail": text}`` raises,
    ``{"big": n}`` answers with n bytes."""

    capabilities = ("work",)

    def receive(self, message: Any) -> Any:
        if isinstance(message, dict):
            if "fail" in message:
                raise ValueError(message["fail"])
            if "big" in message:
                return b"x" * int(message["big"])
            if "sleep" in message:
                threading.Event().wait(float(message["sleep"]))
            if "job" in message:
                self.node.ref("ledger").ask({"effect": message["job"]}, timeout=10.0)
        return message


class Ledger(taskmesh.Actor):
    """Counts effects by job id; ``"counts"`` answers with them."""

    def on_start(self) -> None:
        self.counts: Counter[str] = Counter()

    def receive(self, message: Any) -> Any:
        if message == "counts":
            return dict(self.counts)
        self.counts[message["effect"]] += 1
        return None


class Resize(taskmesh.Actor):
    capabilities = ("resize",)

    def receive(self, message: Any) -> Any:
        return message["img"] * 2


class Merge(taskmesh.Actor):
    capabilities = ("merge",)

    def receive(self, results: list[int]) -> int:
        return sum(results)


class Alerts(taskmesh.Actor):
    """An ``on_error`` handler: keeps the notices; ``"notices"`` lists them."""

    def on_start(self) -> None:
        self.notices: list[Any] = []

    def receive(self, message: Any) -> Any:
        if message == "notices":
            return self.notices
        self.notices.append(message)
        return "alerted"


def keeper(node: Node) -> None:
    for actor, name in ((Worker, "worker"), (Ledger, "ledger"), (Resize, "resize"),
                        (Merge, "merge"), (Alerts, "alerts")):  # fmt: skip
        node.spawn(actor, name=name)
