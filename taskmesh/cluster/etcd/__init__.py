"""Our one adapter over etcd3: client, lease keepalive and resilient watches.

Nothing else in taskmesh imports ``etcd3``. Here live endpoint failover and
error translation (`EtcdClient`), keepalive that notices a lost lease
(`LeaseKeeper`), and watches that survive restarts and compaction
(`PrefixWatch`).
"""

from __future__ import annotations

from ._client import EtcdClient as EtcdClient
from ._lease import LeaseKeeper as LeaseKeeper
from ._types import Compare as Compare
from ._types import Delete as Delete
from ._types import Get as Get
from ._types import KeyValue as KeyValue
from ._types import Op as Op
from ._types import Put as Put
from ._types import Status as Status
from ._types import TxnResult as TxnResult
from ._watch import PrefixWatch as PrefixWatch
from ._watch import WatchEvent as WatchEvent

__all__ = [
    "Compare",
    "Delete",
    "EtcdClient",
    "Get",
    "KeyValue",
    "LeaseKeeper",
    "Op",
    "PrefixWatch",
    "Put",
    "Status",
    "TxnResult",
    "WatchEvent",
]
