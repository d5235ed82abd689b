"""Test actors written once for both kinds of actor, and a journal.

A test actor derives from :class:`Both` and implements ``async def
handle(message)``; ``kind(Cls)`` (the parametrised ``kind`` fixture) gives
its threaded twin (a plain ``receive`` that steps ``handle`` to its end,
blocking where it waits) or its async twin (``async def receive`` on the
event loop). That is how the actor suite runs over both kinds, the way
pykka runs its suite over each runtime. Waiting inside ``handle`` uses a
:class:`Gate`, which blocks a thread but suspends a coroutine.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Generator
from typing import Any, TypeVar

import taskmesh
from taskmesh.actors.cell import run_sync

A = TypeVar("A", bound=type[taskmesh.Actor])


class Both(taskmesh.Actor):
    """Base of the test actors that run as either kind."""

    async def handle(self, message: Any) -> Any:
        raise NotImplementedError


class Kind:
    """Makes the threaded or the async twin of a :class:`Both` class."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._made: dict[type, type] = {}

    def __repr__(self) -> str:
        return self.name

    @property
    def is_async(self) -> bool:
        return self.name == "async"

    def __call__(self, cls: A) -> A:
        made = self._made.get(cls)
        if made is None:
            if self.is_async:

                async def areceive(self: Both, message: Any) -> Any:
                    return await self.handle(message)

                body = {"receive": areceive}
            else:

                def receive(self: Both, message: Any) -> Any:
                    return run_sync(self.handle(message))

                body = {"receive": receive}
            made = self._made[cls] = type(cls.__name__, (cls,), body)
        return made  # type: ignore[return-value]


class _Done:
    """An awaitable that is already done (a threaded twin's wait)."""

    def __init__(self, value: bool) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, bool]:
        return self.value
        yield  # a generator: awaiting it returns at once


class Gate:
    """A threading.Event that a coroutine can await without blocking its loop."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def set(self) -> None:
        with self._lock:
            self._event.set()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(lambda f=future: f.done() or f.set_result(None))

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float = 30.0) -> Awaitable[bool]:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return _Done(self._event.wait(timeout))
        return self._wait_async(loop, timeout)

    async def _wait_async(self, loop: asyncio.AbstractEventLoop, timeout: float) -> bool:
        with self._lock:
            if self._event.is_set():
                return True
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, future))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False
        return True


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


class Worker(Both):
    """Logs its lifecycle; 'boom' raises ValueError, 'key' KeyError, etc."""

    def __init__(self, journal: Journal | None = None, gate: Gate | None = None) -> None:
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

    async def handle(self, message: Any) -> Any:
        if message == "wait":
            assert self.gate is not None
            await self.gate.wait()
            return "waited"
        if message == "wait-then-boom":
            assert self.gate is not None
            await self.gate.wait()
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
