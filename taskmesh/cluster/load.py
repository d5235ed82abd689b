"""`LoadBoard`: each node's load, published when it changes, read on demand.

Load used to live in the member record, rewritten every two seconds and
watched by every node: each write woke all N nodes, so an idle cluster's
traffic grew with N² (1,247 watch events/s at 50 nodes). Now each node
writes ``load/<node>`` under its lease only when its load changed
meaningfully (`changed`), or every ``refresh`` seconds, and nobody watches
that prefix: readers (``least_loaded`` routing, placement, ``taskmesh
members`` and ``top``) list it when their copy is older than
``interval``, one request per reader, not one event per writer per reader.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

import psutil

from taskmesh.errors import ClusterError

from .etcd import EtcdClient, LeaseKeeper
from .keys import ClusterKeys, decode, encode
from .membership import Load

__all__ = ["LoadBoard", "changed"]

_log = logging.getLogger("taskmesh.cluster.load")


def changed(old: Load, new: Load) -> bool:
    """Whether ``new`` differs from the published ``old`` enough to publish it.

    CPU by 20 points, memory by 10, the queued messages going to or from
    zero or by half (at least 10), the message rate going to or from zero
    or by half (at least 10/s).
    """
    return (
        abs(new.cpu - old.cpu) >= 20
        or abs(new.memory - old.memory) >= 10
        or _moved(old.mailbox, new.mailbox)
        or _moved(old.rate, new.rate)
    )


def _moved(old: float, new: float) -> bool:
    if (old == 0) != (new == 0):
        return True
    return abs(new - old) >= max(10.0, abs(old) / 2)


class LoadBoard:
    """Publishes this node's load and reads every node's; thread-safe.

    ``mailbox_total`` and ``messages_total`` are called on the load thread
    (``taskmesh-load``). ``publisher=False`` (a client) only reads.
    """

    def __init__(
        self,
        client: EtcdClient,
        keeper: LeaseKeeper,
        keys: ClusterKeys,
        node: str,
        *,
        interval: float = 2.0,
        refresh: float = 30.0,
        mailbox_total: Callable[[], int] | None = None,
        messages_total: Callable[[], int] | None = None,
        publisher: bool = True,
    ) -> None:
        self._client = client
        self._keeper = keeper
        self._prefix = keys.root + "load/"
        self.node = node
        self.interval = interval
        self.refresh = refresh
        self._mailbox_total = mailbox_total
        self._messages_total = messages_total
        self._publisher = publisher
        self._lock = threading.Lock()
        self._loads: dict[str, Load] = {}
        self._read_at = -math.inf
        self._reading = False
        self._mine = Load()
        self._published: Load | None = None
        self._published_at = -math.inf
        self._last_count: tuple[float, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.writes = 0
        """Load records written so far (for tests and benchmarks)."""
        if publisher:
            keeper.on_acquired(self._publish_under)

    def key(self, node: str) -> str:
        return self._prefix + node

    # --- publishing (load thread; lease thread for a new lease) ---------------------

    def start(self) -> None:
        """Start sampling and publishing this node's load (a publisher only)."""
        if not self._publisher or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="taskmesh-load", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    @property
    def mine(self) -> Load:
        """This node's load as last sampled."""
        return self._mine

    def _run(self) -> None:
        psutil.cpu_percent(interval=None)  # the first reading is meaningless
        while not self._stop.wait(self.interval):
            self._mine = self._sample()
            lease = self._keeper.lease_id
            if lease is None:
                continue
            due = time.monotonic() - self._published_at >= self.refresh
            if due or self._published is None or changed(self._published, self._mine):
                try:
                    self._publish_under(lease)
                except ClusterError as exc:
                    _log.debug("load publish failed: %s", exc)

    def _sample(self) -> Load:
        now = time.monotonic()
        messages = _probe(self._messages_total, "messages_total")
        rate = 0.0
        if self._last_count is not None and now > self._last_count[0]:
            rate = max(0.0, (messages - self._last_count[1]) / (now - self._last_count[0]))
        self._last_count = (now, messages)
        return Load(
            cpu=float(psutil.cpu_percent(interval=None)),
            memory=float(psutil.virtual_memory().percent),
            mailbox=_probe(self._mailbox_total, "mailbox_total"),
            messages=messages,
            rate=round(rate, 1),
        )

    def _publish_under(self, lease: int) -> None:
        load = self._mine
        self._client.put(self.key(self.node), _to_bytes(load), lease=lease)
        self._published, self._published_at = load, time.monotonic()
        self.writes += 1
        with self._lock:
            self._loads[self.node] = load

    # --- reading (any thread) ---------------------------------------------------

    def get(self, node: str) -> Load | None:
        """``node``'s load as last read, never waiting on etcd; a stale copy is
        refreshed in the background for the next caller."""
        self._refresh_if_stale(wait=False)
        with self._lock:
            return self._loads.get(node)

    def all(self, *, wait: bool = False) -> dict[str, Load]:
        """Every node's load; ``wait`` reads etcd now if the copy is stale."""
        self._refresh_if_stale(wait=wait)
        with self._lock:
            return dict(self._loads)

    @property
    def never_read(self) -> bool:
        """Whether no read of the loads has succeeded yet."""
        return self._read_at == -math.inf

    def _refresh_if_stale(self, *, wait: bool) -> None:
        with self._lock:
            if time.monotonic() - self._read_at < self.interval or self._reading:
                return
            self._reading = True
        if wait:
            self._read()
        else:
            threading.Thread(target=self._read, name="taskmesh-load-read", daemon=True).start()

    def _read(self) -> None:
        try:
            kvs, _ = self._client.get_prefix(self._prefix)
        except ClusterError as exc:
            _log.debug("reading loads failed: %s", exc)
            kvs = None
        with self._lock:
            self._reading = False
            if kvs is None:
                return
            self._read_at = time.monotonic()
            self._loads = {
                ClusterKeys.tail(self._prefix, kv.key): _from_bytes(kv.value) for kv in kvs
            }


def _to_bytes(load: Load) -> bytes:
    return encode(
        {
            "cpu": load.cpu,
            "memory": load.memory,
            "mailbox": load.mailbox,
            "messages": load.messages,
            "rate": load.rate,
        }
    )


def _from_bytes(raw: bytes) -> Load:
    value = decode(raw)
    try:
        return Load(
            float(value.get("cpu", 0.0)),
            float(value.get("memory", 0.0)),
            int(value.get("mailbox", 0)),
            int(value.get("messages", 0)),
            float(value.get("rate", 0.0)),
        )
    except (TypeError, ValueError):
        return Load()


def _probe(read: Callable[[], int] | None, what: str) -> int:
    """Call a load callback (load thread); 0 when absent or failing."""
    if read is None:
        return 0
    try:
        return int(read())
    except Exception:
        _log.exception("%s callback failed", what)
        return 0
