"""What ``taskmesh entities`` shows: per type, shards and active entities per node.

Shards per node and the last rebalance come from etcd (the shard map);
active entities are not written anywhere (an activation costs no write),
so each member is asked for its figures through the mesh (the ``~?``
target, answered by its entity host), in parallel, each within a timeout.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from taskmesh.entities.shards import STATS
from taskmesh.errors import TaskmeshError

if TYPE_CHECKING:
    from taskmesh.actors.future import Reply
    from taskmesh.client import Client
    from taskmesh.entities.service import Entities

__all__ = ["entities_report"]


def entities_report(
    client: Client, entities: Entities, entity_type: str | None = None, *, timeout: float = 3.0
) -> dict[str, Any]:
    """A msgpack- and JSON-ready report (see the module docstring)."""
    members = client.members()
    asked: dict[str, Reply] = {}
    for node, member in members.items():
        try:
            asked[node] = client.locator.ref(node, member.address, STATS).ask_async(
                None, timeout=timeout
            )
        except TaskmeshError:
            continue
    figures: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for node, reply in asked.items():
        try:
            answer = reply.get(timeout)
        except TaskmeshError as error:
            errors[node] = f"{type(error).__name__}: {error}"
            continue
        if isinstance(answer, dict) and isinstance(answer.get("types"), dict):
            figures[node] = answer["types"]
    types = [entity_type] if entity_type else entities.map.types()
    report: list[dict[str, Any]] = []
    for name in types:
        hosts, assigned, _, shards = entities.map.snapshot(name)
        if not hosts and not assigned and entity_type is None:
            continue
        owned = Counter(a.node for shard, a in assigned.items() if shard < shards)
        nodes = []
        for node in sorted(set(hosts) | set(owned)):
            mine = figures.get(node, {}).get(name, {})
            host = hosts.get(node)
            nodes.append(
                {
                    "node": node,
                    "shards": owned.get(node, 0),
                    "active": mine.get("active"),
                    "buffered": mine.get("buffered"),
                    "activations": mine.get("activations"),
                    "passivations": mine.get("passivations"),
                    "handoffs": mine.get("handoffs"),
                    "draining": bool(host.draining) if host is not None else None,
                    "error": errors.get(node, ""),
                }
            )
        view = entities.map.view(name)
        rebalance = view.rebalance if view is not None else None
        report.append(
            {
                "type": name,
                "shards": shards,
                "unassigned": shards - sum(owned.values()),
                "nodes": nodes,
                "last_rebalance": None
                if rebalance is None
                else {
                    "at": rebalance.at,
                    "leader": rebalance.leader,
                    "assigned": rebalance.assigned,
                    "moved": rebalance.moved,
                },
            }
        )
    return {"cluster": client.cluster_name, "types": report}
