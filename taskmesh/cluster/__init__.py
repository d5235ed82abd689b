"""taskmesh.cluster: etcd as the cluster's shared truth.

Membership under leases, leader election with fencing, cluster-wide names,
capability routing tables, singleton placement and an embedded etcd. A node
uses it through one `ClusterMember`; the parts are exported for tools and
tests.
"""

from __future__ import annotations

from .compaction import Compactor as Compactor
from .directory import Directory as Directory
from .election import Election as Election
from .election import Fence as Fence
from .embedded import EmbeddedEtcd as EmbeddedEtcd
from .embedded import find_etcd_binary as find_etcd_binary
from .keys import ClusterKeys as ClusterKeys
from .member import ClusterMember as ClusterMember
from .member import ClusterSettings as ClusterSettings
from .membership import Load as Load
from .membership import MemberEvent as MemberEvent
from .membership import MemberInfo as MemberInfo
from .membership import Membership as Membership
from .names import NameRecord as NameRecord
from .names import Names as Names
from .placement import Placement as Placement
from .placement import Singleton as Singleton
from .quorum import Quorum as Quorum
from .quorum import start_quorum as start_quorum
from .routing import Route as Route
from .routing import RoutingTable as RoutingTable
from .routing import Strategy as Strategy

__all__ = [
    "ClusterKeys",
    "ClusterMember",
    "ClusterSettings",
    "Compactor",
    "Directory",
    "Election",
    "EmbeddedEtcd",
    "Fence",
    "Load",
    "MemberEvent",
    "MemberInfo",
    "Membership",
    "NameRecord",
    "Names",
    "Placement",
    "Quorum",
    "Route",
    "RoutingTable",
    "Singleton",
    "Strategy",
    "find_etcd_binary",
    "start_quorum",
]
