"""``--app`` functions the limits integration test starts nodes with.

Every node runs holders of ``limited`` (they note when each message came)
and of ``gpu`` (each ask is metered: the actors themselves tell the
``meter`` when they start and end one), and senders that drive either.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import taskmesh
from taskmesh.node import Node


class Arrivals(taskmesh.Actor):
    """Holds ``limited``: keeps the wall-clock time of every message."""

    capabilities = ("limited",)

    def on_start(self) -> None:
        self.times: list[float] = []

    def receive(self, message: Any) -> Any:
        if message == "times":
            return self.times
        self.times.append(time.time())
        return None


class Gpu(taskmesh.Actor):
    """Holds ``gpu``: tells the meter when an ask starts and ends, and
    holds it ``message["hold"]`` seconds in between."""

    capabilities = ("gpu",)

    def receive(self, message: Any) -> Any:
        meter = self.node.ref("meter")
        meter.ask("enter", timeout=10.0)
        try:
            threading.Event().wait(float(message["hold"]))
        finally:
            meter.ask("leave", timeout=10.0)
        return "done"


class Meter(taskmesh.Actor):
    """Asks to ``gpu`` in flight now, and the most seen since ``"reset"``."""

    def on_start(self) -> None:
        self.now = self.peak = self.total = 0

    def receive(self, message: Any) -> Any:
        if message == "enter":
            self.now += 1
            self.total += 1
            self.peak = max(self.peak, self.now)
        elif message == "leave":
            self.now -= 1
        elif message == "reset":
            self.peak = self.now
        return {"now": self.now, "peak": self.peak, "total": self.total}


class Sender(taskmesh.Actor):
    """``{"to": cap, "until": wall time, "how": "ask"|"tell", "message": m}``:
    sends through ``node.capability(cap)`` until then; answers how many
    went (and how many failed). ``"limits"``: the limited capabilities
    this node knows of."""

    def receive(self, message: Any) -> Any:
        if message == "limits":
            locator = self.node.locator
            return sorted(locator.limits) if locator is not None else []
        ref = self.node.capability(message["to"])
        sent = failed = 0
        while time.time() < message["until"]:
            try:
                if message["how"] == "ask":
                    ref.ask(message["message"], timeout=20.0)
                else:
                    ref.tell(message["message"])
                sent += 1
            except taskmesh.TaskmeshError:
                failed += 1
        return {"sent": sent, "failed": failed}


def setup(node: Node) -> None:
    """Every node: two holders of ``limited`` and three senders; ``n1`` and
    ``n2`` three holders of ``gpu`` each (``n3``, which the test kills,
    only asks), ``n1`` the meter. The gpu limit is set from code, by every
    node (a repeat changes nothing)."""
    me = node.node_id
    for i in range(3):
        node.spawn(Sender, name=f"sender-{me}-{i}")
        if me != "n3":
            node.spawn(Gpu, name=f"gpu-{me}-{i}")
    for i in range(2):
        node.spawn(Arrivals, name=f"arrivals-{me}-{i}")
    if me == "n1":
        node.spawn(Meter, name="meter")
    node.set_limit("gpu", concurrency=4)
