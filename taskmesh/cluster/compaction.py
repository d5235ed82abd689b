"""`Compactor`: the leader drops etcd history older than one interval.

etcd keeps every revision until someone compacts; an idle fleet that
rewrites a few keys a second fills etcd's quota in months, and then etcd
refuses every write (leases and elections included). The embedded etcd
compacts itself; an external etcd is compacted by the cluster's leader.

Every ``interval`` seconds the leader notes the current revision, and
compacts to the revision it noted one interval earlier: a watch that fell
less than one interval behind resumes where it stopped, one further behind
re-lists (see `PrefixWatch`). Each compaction is first recorded at
``compaction`` with a write guarded by the leader's fence, so a leader that
lost its lease without noticing yet compacts nothing.
"""

from __future__ import annotations

import logging
import threading
import time

from taskmesh.errors import ClusterError, FencingError

from .election import Election, Fence
from .etcd import EtcdClient
from .keys import ClusterKeys, encode

__all__ = ["Compactor"]

_log = logging.getLogger("taskmesh.cluster.compaction")


class Compactor:
    """Compacts etcd history while this node leads; a thread of its own.

    ``interval`` 0 disables it (an operator who compacts etcd otherwise).
    """

    def __init__(
        self,
        client: EtcdClient,
        election: Election,
        keys: ClusterKeys,
        node: str,
        *,
        interval: float,
    ) -> None:
        self._client = client
        self._election = election
        self._key = keys.root + "compaction"
        self._node = node
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mark: tuple[Fence, int] | None = None
        self.compacted = 0
        """The revision this node last compacted etcd to (0: never)."""

    def start(self) -> None:
        """Start the compaction thread (nothing when the interval is 0)."""
        if self.interval <= 0 or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="taskmesh-compaction", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except ClusterError as exc:
                if "not allowed" in str(exc):  # etcd lets only its root user compact
                    _log.warning("not compacting etcd: %s; compact it as root instead", exc)
                    return
                _log.info("compaction skipped: %s", exc)

    def tick(self) -> None:
        """Compaction thread: compact to the mark of the last tick, then mark anew."""
        fence = self._election.fence
        if fence is None:
            self._mark = None
            return
        mark = self._mark
        self._mark = None
        if mark is not None and mark[0] is fence:
            revision = mark[1]
            record = {"node": self._node, "revision": revision, "at": time.time()}
            try:
                fence.put(self._key, encode(record))
            except FencingError:
                _log.info("not compacting: leadership ended")
                return
            if self._client.compact(revision):
                self.compacted = revision
                _log.info("compacted etcd history before revision %d", revision)
        self._mark = (fence, self._client.revision(self._key))
