"""The actors of ``benchmarks/remote.py`` and ``benchmarks/peers.py``.

``taskmesh node --app benchmarks.remote_apps:setup`` hosts:

- ``echo`` (an ordinary, threaded actor) holding the capability ``echo``;
- ``echo-inline`` (``inline = True``) holding ``echo-inline``;
- ``echo0`` .. ``echo3``, inline, for the n:n case;
- ``sink``, which counts tells and answers ``"count"`` with the count;
- ``counter``, the same with the default mailbox (10,000) and some work per
  message (tens of microseconds): a fast producer fills it, and flow control
  holds the producer back.
"""

from __future__ import annotations

from typing import Any

import taskmesh


class Echo(taskmesh.Actor):
    """An ordinary actor: every message runs on its own thread."""

    capabilities = ("echo",)

    def receive(self, message: Any) -> Any:
        return message


class InlineEcho(taskmesh.Actor):
    """A short, non-blocking receive: may run on the I/O thread."""

    capabilities = ("echo-inline",)
    inline = True

    def receive(self, message: Any) -> Any:
        return message


class PlainInlineEcho(taskmesh.Actor):
    inline = True

    def receive(self, message: Any) -> Any:
        return message


class Sink(taskmesh.Actor):
    """Counts tells; ``"count"`` answers the count and resets it."""

    def __init__(self) -> None:
        self.count = 0

    def receive(self, message: Any) -> Any:
        if message == "count":
            n, self.count = self.count, 0
            return n
        if message == "reset":
            self.count = 0
            return 0
        self.count += 1
        return None


class SlowSink(Sink):
    """A sink that works a little for every message (a producer outruns it)."""

    def receive(self, message: Any) -> Any:
        sum(range(2000))
        return super().receive(message)


def setup(node: taskmesh.Node) -> None:
    node.spawn(Echo, name="echo")
    node.spawn(InlineEcho, name="echo-inline")
    for i in range(4):
        node.spawn(PlainInlineEcho, name=f"echo{i}")
    node.spawn(Sink, name="sink", mailbox_size=1_000_000)
    node.spawn(SlowSink, name="counter")
