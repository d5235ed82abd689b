"""``--app`` functions the remote death watch test starts nodes with."""

from __future__ import annotations

from typing import Any

import taskmesh
from taskmesh.node import Node


class Watcher(taskmesh.Actor):
    """Watches actors by name, wherever they run: ``["watch", name]``,
    ``["unwatch", name]``; ``"seen"`` lists the Terminated it got, in order;
    ``"fail"`` makes it fail once (its supervisor restarts it in place)."""

    def on_start(self) -> None:
        self.seen: list[list[str]] = []

    def on_restart(self, reason: BaseException | None) -> None:
        self.kept = True

    def receive(self, message: Any) -> Any:
        if isinstance(message, taskmesh.Terminated):
            self.seen.append([message.name, message.reason])
        elif message == "seen":
            return self.seen
        elif message == "fail":
            raise RuntimeError("the watcher fails once")
        elif message[0] == "watch":
            self.watch(self.node.ref(message[1]))
        elif message[0] == "unwatch":
            self.unwatch(self.node.ref(message[1]))
        return None


class Target(taskmesh.Actor):
    """``"stop"`` stops it; ``"fail"`` makes it fail."""

    def receive(self, message: Any) -> Any:
        if message == "stop":
            self.stop()
        elif message == "fail":
            raise RuntimeError("the target fails")
        return message


def watcher(node: Node) -> None:
    node.spawn(Watcher, name="watcher")


def targets(node: Node) -> None:
    me = node.node_id
    for name in ("stop", "unwatched", "restart", "leave", "after-restart"):
        node.spawn(Target, name=f"{name}-{me}")
    node.spawn(Target, name=f"fail-{me}", restart="temporary")  # a failure ends it
