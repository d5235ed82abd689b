"""``--app`` functions the node integration tests start nodes with."""

from __future__ import annotations

import os
import threading
from typing import Any

import taskmesh
from taskmesh.node import Node


class Echo(taskmesh.Actor):
    """Answers with the message and where it ran; {"sleep": s} waits first."""

    capabilities = ("echo",)

    def on_start(self) -> None:
        self.told: list[Any] = []

    def receive(self, message: Any) -> Any:
        if isinstance(message, dict) and "record" in message:
            self.told.append(message["record"])
            return None
        if message == "told":
            return self.told
        if isinstance(message, dict) and "sleep" in message:
            print("taskmesh: app: sleeping", flush=True)  # the drain test waits for this
            threading.Event().wait(float(message["sleep"]))
        if isinstance(message, dict) and message.get("fail"):
            raise ValueError(str(message["fail"]))
        return {"echo": message, "node": self.system_node, "pid": os.getpid()}

    @property
    def system_node(self) -> str:
        return os.environ.get("TASKMESH_TEST_NODE", "?")


def echo(node: Node) -> None:
    node.spawn(Echo, name=f"echo-{node.node_id}")


def named_echo(node: Node) -> None:
    node.spawn(Echo, name="echo")


def broken(node: Node) -> None:
    raise RuntimeError("the app is broken")


class Clock(taskmesh.Actor):
    """A cluster singleton: answers with the node it runs on and its tick count."""

    def on_start(self) -> None:
        self.ticks = 0

    def receive(self, message: Any) -> Any:
        self.ticks += 1
        return {"node": os.environ.get("TASKMESH_TEST_NODE", "?"), "ticks": self.ticks}


def clock(node: Node) -> None:
    node.singleton(Clock, name="clock", capability="timekeeper")


class InlineEcho(Echo):
    """Echo as an inline actor; answers also name the thread that ran it."""

    inline = True

    def receive(self, message: Any) -> Any:
        if isinstance(message, dict) and "ask" in message:
            return self.system.ref(message["ask"]).ask("hello", timeout=5.0)
        answer = super().receive(message)
        if isinstance(answer, dict) and "echo" in answer:
            answer["thread"] = threading.current_thread().name
        return answer


def inline_echo(node: Node) -> None:
    node.spawn(InlineEcho, name="inline")
    node.spawn(Echo, name="threaded")


class AsyncPong(taskmesh.Actor):
    """An async actor holding the capability "pong"."""

    capabilities = ("pong",)

    async def receive(self, message: Any) -> Any:
        if message == "boom":
            raise ValueError("async boom")
        return {"pong": message, "node": os.environ.get("TASKMESH_TEST_NODE", "?")}


class AsyncPinger(taskmesh.Actor):
    """An async actor that awaits another node's actors, by name and by capability."""

    max_concurrency = 8

    async def receive(self, message: Any) -> Any:
        by_name = await self.node.ref(message["to"]).ask_async(message["n"], timeout=10.0)
        by_capability = await self.node.capability("pong").ask_async(message["n"], timeout=10.0)
        await self.node.ref(message["to"]).tell_async("told")
        return {"by_name": by_name, "by_capability": by_capability}


def async_pair(node: Node) -> None:
    """Each node hosts an async pinger and an async pong."""
    node.spawn(AsyncPinger, name=f"pinger-{node.node_id}")
    node.spawn(AsyncPong, name=f"pong-{node.node_id}")


class Gated(taskmesh.Actor):
    """Counts tells, but takes each one only while its gate is open: a
    mailbox that fills up on demand. ``"count"`` answers the count (and
    waits like any message); the gate is opened by ``Gate``."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate
        self.count = 0

    def receive(self, message: Any) -> Any:
        self.gate.wait()
        if message == "count":
            return self.count
        self.count += 1
        return None


class Gate(taskmesh.Actor):
    """``"open"`` / ``"close"`` the gate of ``gated``; ``"depth"`` answers how
    many messages wait in its mailbox."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    def receive(self, message: Any) -> Any:
        if message == "open":
            self.gate.set()
        elif message == "close":
            self.gate.clear()
        elif message == "depth":
            return sum(
                n
                for name, n in self.node.system.mailbox_depths().items()
                if name.startswith("gated")
            )
        return None


def gated(node: Node) -> None:
    """``gated`` (mailbox of 1,000, gate closed), ``gate`` and ``echo-<node>``."""
    gate = threading.Event()
    node.spawn(Gated, gate, name="gated", mailbox_size=1_000)
    node.spawn(Gate, gate, name="gate")
    node.spawn(Echo, name=f"echo-{node.node_id}")
