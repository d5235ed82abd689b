"""The key layout under ``/taskmesh/<cluster>/`` and the JSON values stored there.

One place knows where things live, so every module and every tool (the CLI's
``members``/``routes``/``leader`` commands) reads the same layout::

    members/<node>                     member record, under the node's lease
    names/<name>                       {"node", "address"}, under the owner's lease
    routes/<capability>/<node>/<actor> {"address"}, under the node's lease
    election/<lease-hex>               node id, under the node's lease
    singletons/<name>                  {"capability"}, no lease (declared)
    placements/<name>                  {"node", "capability"}, under the target's lease

Schedules and workflows keep their records beside these (``schedules/``,
``workflow-status/``, ...): see :mod:`taskmesh.platform.records`.
"""

from __future__ import annotations

import json
from typing import Any

from taskmesh.actors.names import validate_name as _validate_name

__all__ = ["ClusterKeys", "decode", "encode", "validate_name"]


def validate_name(value: str, what: str = "name") -> str:
    """Return ``value`` if it is a valid name, capability, node or cluster id
    (the rules of :mod:`taskmesh.actors.names`); raises `InvalidName`."""
    return _validate_name(value, what=what)


def encode(value: dict[str, Any]) -> bytes:
    """A record as stored in etcd (compact JSON)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def decode(raw: bytes) -> dict[str, Any]:
    """A record read from etcd; an unreadable one decodes to ``{}``."""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


class ClusterKeys:
    """Key names for one cluster."""

    def __init__(self, cluster: str) -> None:
        self.cluster = validate_name(cluster, "cluster name")
        self.root = f"/taskmesh/{cluster}/"
        self.members = self.root + "members/"
        self.names = self.root + "names/"
        self.routes = self.root + "routes/"
        self.election = self.root + "election/"
        self.singletons = self.root + "singletons/"
        self.placements = self.root + "placements/"

    def member(self, node: str) -> str:
        return self.members + node

    def name(self, name: str) -> str:
        return self.names + name

    def route(self, capability: str, node: str, actor: str) -> str:
        return f"{self.routes}{capability}/{node}/{actor}"

    def singleton(self, name: str) -> str:
        return self.singletons + name

    def placement(self, name: str) -> str:
        return self.placements + name

    @staticmethod
    def tail(prefix: str, key: str) -> str:
        """The part of ``key`` after ``prefix``."""
        return key[len(prefix) :]
