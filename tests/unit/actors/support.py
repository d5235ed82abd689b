"""Test actors and a journal shared by the actor tests."""

from __future__ import annotations

import threading
from typing import Any

import taskmesh


class Journal:
    """A thread-safe event log shared by test actors."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[tuple[str, ...]] = []

    def add(self, *event: str) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, kind: str) -> list[str]:
        with self._lock:
            return [e[1] for e in self.events if e[0] == kind]


class Worker(taskmesh.Actor):
    """Logs its lifecycle; 'boom' raises ValueError, 'key' KeyError, etc."""

    instances = 0

    def __init__(self, journal: Journal | None = None, gate: threading.Event | None = None) -> None:
        self.journal = journal
        self.gate = gate
        self.handled: list[Any] = []
        self.state = 0

    def on_start(self) -> None:
        if self.journal:
            self.journal.add("start", self.name)

    def on_stop(self) -> None:
        if self.journal:
            self.journal.add("stop", self.name)

    def on_restart(self, reason: BaseException | None) -> None:
        if self.journal:
            self.journal.add("restart", self.name, repr(reason))

    def receive(self, message: Any) -> Any:
        if message == "wait":
            assert self.gate is not None
            self.gate.wait(30)
            return "waited"
        if message == "wait-then-boom":
            assert self.gate is not None
            self.gate.wait(30)
            raise ValueError("boom after wait")
        if message == "boom":
            raise ValueError("boom")
        if message == "key":
            raise KeyError("key")
        if message == "type":
            raise TypeError("type")
        if message == "exit":
            self.stop()
            return "exiting"
        if message == "state":
            return self.state
        if message == "handled":
            return list(self.handled)
        if message == "id":
            return id(self)
        self.state += 1
        self.handled.append(message)
        return message
