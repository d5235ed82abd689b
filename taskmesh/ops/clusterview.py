"""The whole cluster in one JSON-ready dict: what ``/api/cluster`` serves
and what ``taskmesh dead-letters`` prints.

Membership, names, routes and the leader come from the caches a node or a
client keeps anyway; the per-node figures (actors, rates, dead letters,
asks in flight) come from each member's introspection actor
(:mod:`taskmesh.ops.introspect`), asked in parallel through the mesh. A
member that does not answer in time is listed with an ``error`` instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from taskmesh.errors import TaskmeshError
from taskmesh.ops.introspect import OPS_ACTOR

if TYPE_CHECKING:
    from taskmesh.actors.future import Reply
    from taskmesh.cluster import MemberInfo, Route
    from taskmesh.node import Node
    from taskmesh.transport import Transport

__all__ = ["ClusterSource", "ClusterView", "NodeSource"]


class ClusterSource(Protocol):
    """What the view reads: a :class:`~taskmesh.Client` is one as it is, a
    node through :class:`NodeSource`. Every method reads local caches."""

    cluster_name: str
    transport: Transport

    def members(self) -> dict[str, MemberInfo]: ...

    def actors(self) -> dict[str, tuple[str, str]]: ...

    def routes(self) -> dict[str, list[Route]]: ...

    def leader(self) -> str | None: ...

    def reachable(self, node: str) -> bool: ...


class NodeSource:
    """A node seen as a :class:`ClusterSource` (its cluster member's caches)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.cluster_name = node.cluster_name
        self.transport = node.transport

    def members(self) -> dict[str, MemberInfo]:
        return self.node.members()

    def actors(self) -> dict[str, tuple[str, str]]:
        member = self.node.member
        if member is None:
            return {}
        return {name: (r.node, r.address) for name, r in member.names.all().items()}

    def routes(self) -> dict[str, list[Route]]:
        member = self.node.member
        return member.routing.capabilities() if member is not None else {}

    def leader(self) -> str | None:
        member = self.node.member
        return member.leader if member is not None else None

    def reachable(self, node: str) -> bool:
        return self.node.reachable(node)


class ClusterView:
    """Builds the cluster report (:meth:`collect`), from any thread.

    ``local`` is the node serving the view, if any: its own figures are
    asked of its introspector directly, without the mesh. ``timeout``
    bounds the wait for every member's answer (they are asked at once).
    ``max_age`` lets concurrent callers (several open pages) share one
    report instead of asking every member again.
    """

    def __init__(
        self,
        source: ClusterSource,
        *,
        local: Node | None = None,
        timeout: float = 2.0,
        max_age: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._local = local
        self._timeout = timeout
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, int, dict[str, Any]] | None = None

    def collect(self, *, letters: int = 5) -> dict[str, Any]:
        """The report (see ``docs`` of ``/api/cluster`` in README)."""
        with self._lock:  # one collection at a time; the others reuse it
            cached = self._cached
            fresh = cached is not None and self._clock() - cached[0] < self._max_age
            if cached is not None and fresh and cached[1] == letters:
                return cached[2]
            report = self._collect(letters)
            self._cached = (self._clock(), letters, report)
            return report

    def _collect(self, letters: int) -> dict[str, Any]:
        source = self._source
        members = source.members()
        leader = source.leader()
        query = {"query": "node", "letters": letters}
        asked: dict[str, Reply | Exception] = {}
        for node_id, info in members.items():
            try:
                asked[node_id] = self._ask(node_id, info, query)
            except TaskmeshError as error:
                asked[node_id] = error
        deadline = self._clock() + self._timeout
        nodes = []
        for node_id, info in sorted(members.items()):
            reply = asked[node_id]
            report: dict[str, Any] | None = None
            problem = ""
            if isinstance(reply, Exception):
                problem = _describe(reply)
            else:
                try:
                    report = reply.get(max(deadline - self._clock(), 0.0))
                except Exception as failure:  # the answer of one member, whatever it is
                    problem = _describe(failure)
            nodes.append(_member_entry(info, leader, source.reachable(node_id), report, problem))
        routes = {
            capability: [{"actor": r.actor, "node": r.node} for r in holders]
            for capability, holders in sorted(source.routes().items())
        }
        return {
            "cluster": source.cluster_name,
            "served_by": self._local.node_id if self._local is not None else None,
            "time": time.time(),
            "leader": leader,
            "members": nodes,
            "names": {name: node for name, (node, _) in sorted(source.actors().items())},
            "routes": routes,
            "totals": _totals(nodes),
        }

    def _ask(self, node_id: str, info: MemberInfo, query: dict[str, Any]) -> Reply:
        local = self._local
        if local is not None and node_id == local.node_id:
            return local.system.ref(OPS_ACTOR).ask_async(query, timeout=self._timeout)
        key = info.public_key.encode() if info.public_key else None
        ref = self._source.transport.ref(info.address, OPS_ACTOR, server_key=key)
        return ref.ask_async(query, timeout=self._timeout)


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def _member_entry(
    info: MemberInfo, leader: str | None, reachable: bool, report: dict[str, Any] | None, error: str
) -> dict[str, Any]:
    load = info.load
    entry: dict[str, Any] = {
        "node": info.node,
        "address": info.address,
        "host": info.host,
        "pid": info.pid,
        "started": info.started,
        "capabilities": sorted(info.capabilities),
        "leader": info.node == leader,
        "suspect": not reachable,
        "load": {
            "cpu_percent": round(load.cpu, 1),
            "memory_percent": round(load.memory, 1),
            "mailbox": load.mailbox,
        },
        "error": error or None,
    }
    report = report or {}
    entry["actors"] = report.get("actors", [])
    entry["messages"] = report.get("messages", {})
    entry["rates"] = report.get("rates", {"at": [], "in": [], "out": []})
    entry["dead_letters"] = report.get("dead_letters", {"total": 0, "by_reason": {}, "recent": []})
    entry["asks_pending"] = report.get("asks_pending", 0)
    entry["restarts"] = report.get("restarts", 0)
    return entry


def _totals(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    by_reason: dict[str, int] = {}
    for entry in nodes:
        for reason, count in entry["dead_letters"]["by_reason"].items():
            by_reason[reason] = by_reason.get(reason, 0) + count

    def last(entry: dict[str, Any], key: str) -> float:
        series = entry["rates"].get(key) or [0.0]
        return float(series[-1])

    return {
        "members": len(nodes),
        "actors": sum(len(entry["actors"]) for entry in nodes),
        "rate_in": round(sum(last(entry, "in") for entry in nodes), 2),
        "rate_out": round(sum(last(entry, "out") for entry in nodes), 2),
        "asks_pending": sum(entry["asks_pending"] for entry in nodes),
        "dead_letters": dict(sorted(by_reason.items())),
        "dead_letters_total": sum(by_reason.values()),
    }
