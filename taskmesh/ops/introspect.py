"""The introspection actor: every node answers questions about itself.

Each node runs one :class:`Introspector` under the local name ``_ops``
(a leading ``_`` keeps it out of the cluster-wide names, so every node has
its own). The cluster page and ``taskmesh dead-letters`` ask it on every
member through the mesh, so they need no metrics port on the other nodes.

Its answer (:func:`node_report`) holds only msgpack values: the node's
actors and mailbox depths, dead letters by reason and the last few letters
(their messages as truncated ``repr``, since a local dead letter may hold
any object), message counters, asks in flight, and the in/out rates of the
last minutes. Those rates come from a ring of samples the actor takes once
a second on its own timer: the message path pays nothing for them.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from taskmesh.actors.actor import Actor
from taskmesh.actors.ref import ActorRef

if TYPE_CHECKING:
    from taskmesh.node import Node

__all__ = [
    "OPS_ACTOR",
    "RUNTIME_ACTORS",
    "Introspector",
    "Samples",
    "node_report",
    "spawn_introspector",
]

OPS_ACTOR = "_ops"
RUNTIME_ACTORS = frozenset({OPS_ACTOR, "_workflows", "_deathwatch"})
"""Actors the runtime runs on every node (this one, the workflow
coordinator, the death watch): left out of what the page and the metrics
count as actors."""
"""The local name of every node's introspection actor."""

SAMPLE_INTERVAL = 1.0
"""Seconds between two samples of the message counters."""

HISTORY = 300
"""Samples kept: five minutes at one a second."""

REPR_LIMIT = 200
"""Characters of a dead letter's message shown (the rest is cut, with '...')."""

_TICK = "_ops:sample"


class Samples:
    """A ring of ``(time, messages in, messages out)`` samples of one node.

    Written by the introspection actor's thread only; :meth:`rates` copies
    the ring first, so any thread may read it.
    """

    def __init__(self, keep: int = HISTORY) -> None:
        self._ring: deque[tuple[float, int, int]] = deque(maxlen=keep)

    def add(self, at: float, messages_in: int, messages_out: int) -> None:
        self._ring.append((at, messages_in, messages_out))

    def rates(self) -> dict[str, Any]:
        """Messages per second between consecutive samples, oldest first:
        ``{"at": [end times], "in": [...], "out": [...]}`` (wall-clock times)."""
        ring = list(self._ring)
        at: list[float] = []
        rate_in: list[float] = []
        rate_out: list[float] = []
        for (t0, in0, out0), (t1, in1, out1) in itertools.pairwise(ring):
            span = t1 - t0
            if span <= 0:
                continue
            at.append(round(t1, 3))
            rate_in.append(round(max(in1 - in0, 0) / span, 2))
            rate_out.append(round(max(out1 - out0, 0) / span, 2))
        return {"at": at, "in": rate_in, "out": rate_out}


class Introspector(Actor):
    """Answers ``{"query": "node", "letters": N}`` with :func:`node_report`
    (at most ``N`` recent dead letters, default 10). Runs in its own
    actor thread, like any actor; the sampling timer ticks there too."""

    def __init__(self, samples: Samples) -> None:
        self._samples = samples

    def on_start(self) -> None:
        self._sample()
        self.timers.start_periodic(_TICK, _TICK, SAMPLE_INTERVAL)

    def receive(self, message: Any) -> Any:
        if message == _TICK:
            self._sample()
            return None
        if isinstance(message, dict) and message.get("query") == "node":
            letters = message.get("letters", 10)
            if not isinstance(letters, int) or isinstance(letters, bool) or letters < 0:
                raise ValueError(f"letters must be a whole number >= 0, not {letters!r}")
            return node_report(self.node, self._samples, letters=letters)
        raise ValueError(f"unknown query {message!r}: ask {{'query': 'node'}}")

    def _sample(self) -> None:
        counters = self.node.transport.snapshot()
        self._samples.add(time.time(), counters["messages_in"], counters["messages_out"])


def spawn_introspector(node: Node) -> ActorRef:
    """Start ``node``'s introspection actor (the node calls this at start)."""
    return node.system.spawn(Introspector, Samples(), name=OPS_ACTOR, restart="permanent")


def node_report(node: Node, samples: Samples | None, *, letters: int = 10) -> dict[str, Any]:
    """What one node knows about itself, as msgpack values (any thread).

    Keys: ``node``, ``address``, ``time``, ``actors`` (name, queued
    messages, capabilities; the introspector itself left out),
    ``dead_letters`` (``total``, ``by_reason``, ``recent``), ``messages``
    (``in``, ``out``, ``bytes_in``, ``bytes_out``), ``asks_pending``,
    ``restarts``, ``peers`` (address -> link state) and ``rates``.
    """
    transport = node.transport.snapshot()
    capabilities = local_capabilities(node)
    actors = [
        {"name": name, "mailbox": depth, "capabilities": sorted(capabilities.get(name, ()))}
        for name, depth in sorted(node.system.mailbox_depths().items())
        if name not in RUNTIME_ACTORS
    ]
    counts = node.dead_letters.counts()
    recent = node.dead_letters.recent()[-letters:] if letters else []
    return {
        "node": node.node_id,
        "address": node.address,
        "time": time.time(),
        "actors": actors,
        "dead_letters": {
            "total": sum(counts.values()),
            "by_reason": dict(sorted(counts.items())),
            "recent": [
                {
                    "recipient": str(letter.recipient),
                    "reason": str(letter.reason),
                    "error": str(letter.error),
                    "at": float(letter.at),
                    "message": short_repr(letter.message),
                }
                for letter in recent
            ],
        },
        "messages": {
            "in": int(transport["messages_in"]),
            "out": int(transport["messages_out"]),
            "bytes_in": int(transport["bytes_in"]),
            "bytes_out": int(transport["bytes_out"]),
        },
        "asks_pending": int(transport["asks_pending"]),
        "restarts": int(node.system.restart_count),
        "peers": {str(a): str(s) for a, s in transport.get("peers", {}).items()},
        "rates": samples.rates() if samples is not None else {"at": [], "in": [], "out": []},
    }


def local_capabilities(node: Node) -> dict[str, set[str]]:
    """Actor name -> capabilities, for this node's actors (from the routing
    table the node keeps anyway)."""
    member = node.member
    held: dict[str, set[str]] = {}
    if member is None:
        return held
    for capability, routes in member.routing.capabilities().items():
        for route in routes:
            if route.node == node.node_id:
                held.setdefault(route.actor, set()).add(capability)
    return held


def short_repr(value: Any, limit: int = REPR_LIMIT) -> str:
    """``repr(value)`` cut to ``limit`` characters; never raises."""
    try:
        text = repr(value)
    except Exception as error:  # a user's __repr__ may fail
        text = f"<unprintable {type(value).__name__}: {type(error).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
