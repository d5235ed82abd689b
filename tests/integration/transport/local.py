"""An in-test transport with one recording actor, for the test process's side."""

from __future__ import annotations

import queue
import threading
from typing import Any

from taskmesh.actors.future import ReplyTo
from taskmesh.errors import ActorNotFound
from taskmesh.transport import CurveKeys, Transport


class Inbox:
    """Actor ``inbox`` in the test process: records tells, echoes asks.

    ``deliver`` runs on the transport's I/O thread and only enqueues; a
    thread of its own answers, like a real actor.
    """

    def __init__(self) -> None:
        self.received: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._work: queue.SimpleQueue[tuple[Any, ReplyTo] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def deliver(
        self,
        target: str,
        message: Any,
        reply: ReplyTo | None,
        deadline: float | None,
        idempotency_key: str | None = None,
    ) -> None:
        if target != "inbox":
            raise ActorNotFound(target)
        if reply is None:
            self.received.put(message)
        else:
            self._work.put((message, reply))

    def _run(self) -> None:
        while (item := self._work.get()) is not None:
            message, reply = item
            reply.set({"echo": message})

    def close(self) -> None:
        self._work.put(None)
        self._thread.join(10)


def local_transport(
    inbox: Inbox | None = None, keys: CurveKeys | None = None, **kw: Any
) -> Transport:
    transport = Transport(deliver=inbox.deliver if inbox else None, keys=keys, **kw)
    transport.start()
    return transport
