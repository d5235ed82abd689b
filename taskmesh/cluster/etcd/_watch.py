"""`PrefixWatch`: a watch on a key prefix that survives etcd restarts and compaction.

It lists the prefix, hands the snapshot to ``on_reset``, then watches from
the next revision and hands each change to ``on_event``. When the stream
breaks (etcd restarted, endpoint lost) it re-subscribes from the last
revision it saw, so no change is missed; when that revision has been
compacted away, it lists again and calls ``on_reset`` with the fresh
snapshot. Consumers therefore keep a cache that is always a consistent
picture of some revision, and keep serving it while etcd is away.

etcd3 delivers responses on its own thread; this class only queues them
there, and runs every callback on its own thread, ``taskmesh-watch:<name>``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import etcd3.events as etcd_events
import etcd3.exceptions as etcd_errors

from taskmesh.errors import ClusterError, EtcdUnavailable

from ._client import EtcdClient, KeyValue, _translate, prefix_end

__all__ = ["PrefixWatch", "WatchEvent"]

_log = logging.getLogger("taskmesh.cluster.watch")


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change under the watched prefix. For a delete, ``kv.value`` is empty."""

    kind: Literal["put", "delete"]
    kv: KeyValue


ResetHook = Callable[[list[KeyValue], int], None]
EventHook = Callable[[WatchEvent], None]
StateHook = Callable[[bool], None]


class PrefixWatch:
    """Watch every key under ``prefix``; see the module docstring.

    ``on_reset(kvs, revision)`` replaces the consumer's cache; ``on_event``
    applies one change; ``on_state(connected)`` reports the stream going
    down and up again. All three run on this watch's thread.
    """

    def __init__(
        self,
        client: EtcdClient,
        prefix: str,
        *,
        on_reset: ResetHook,
        on_event: EventHook,
        on_state: StateHook | None = None,
        name: str | None = None,
        retry_interval: float = 0.25,
    ) -> None:
        self._client = client
        self.prefix = prefix
        self._on_reset = on_reset
        self._on_event = on_event
        self._on_state = on_state
        self._name = name or prefix
        self._retry = retry_interval
        self._inbox: queue.Queue[tuple[int, Any]] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._synced = threading.Event()
        self.revision = 0
        self.resets = 0
        self._generation = 0
        self._watcher: Any = None
        self._watch_id: Any = None
        self._refused: ClusterError | None = None  # etcd answered no (not "unreachable")

    def start(self, *, wait: float | None = None) -> PrefixWatch:
        """Start the watch thread; with ``wait``, block until the first snapshot."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"taskmesh-watch:{self._name}", daemon=True
            )
            self._thread.start()
        if wait is not None:
            end = time.monotonic() + wait
            while not self._synced.wait(min(0.05, max(0.0, end - time.monotonic()))):
                if self._refused is not None:
                    raise self._refused  # permission denied, bad credentials: no use waiting
                if time.monotonic() >= end:
                    raise EtcdUnavailable(
                        f"watch on {self.prefix} got no snapshot within {wait}s"
                        " (etcd or this machine is too slow: see start_timeout)"
                    )
        return self

    @property
    def synced(self) -> bool:
        """Whether a first snapshot has been delivered."""
        return self._synced.is_set()

    def stop(self) -> None:
        """Cancel the watch and join its thread."""
        self._stop.set()
        self._inbox.put((-1, None))
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None
        self._close_watcher()

    # --- the watch thread -----------------------------------------------------

    def _run(self) -> None:
        need_list = True
        connected = False
        while not self._stop.is_set():
            try:
                if need_list:
                    self._list()
                    need_list = False
                self._subscribe()
            except etcd_errors.RevisionCompactedError:
                need_list = True
                continue
            except ClusterError as exc:
                if not isinstance(exc, EtcdUnavailable):
                    self._refused = exc
                self._client.report_failure()
                if connected:
                    connected = self._set_state(False)
                _log.debug("watch %s: (re)subscribe failed: %s", self._name, exc)
                self._stop.wait(self._retry)
                continue
            if not connected:
                connected = self._set_state(True)
            outcome = self._pump()
            if outcome == "compacted":
                need_list = True
            elif outcome == "broken":
                self._client.report_failure()
                connected = self._set_state(False)
                self._stop.wait(self._retry)

    def _set_state(self, connected: bool) -> bool:
        # Debug only: losing etcd is reported once, by the client (EtcdClient.note).
        _log.debug("watch %s %s", self._name, "connected" if connected else "disconnected")
        if self._on_state is not None:
            self._safe(self._on_state, connected)
        return connected

    def _list(self) -> None:
        kvs, revision = self._client.get_prefix(self.prefix)
        self.revision = revision
        self.resets += 1
        self._safe(self._on_reset, kvs, revision)
        self._synced.set()

    def _subscribe(self) -> None:
        self._close_watcher()
        self._generation += 1
        generation = self._generation

        def deliver(response: Any) -> None:  # runs on etcd3's watcher thread
            self._inbox.put((generation, response))

        if self._client.closed:
            raise EtcdUnavailable("etcd client is closed")
        try:
            watcher = self._client.raw.get_watcher()
            _quiet_when_closed(watcher)
            watch_id = watcher.add_callback(
                self.prefix,
                deliver,
                range_end=prefix_end(self.prefix),
                start_revision=self.revision + 1,
            )
        except etcd_errors.RevisionCompactedError:
            raise
        except Exception as exc:
            err = _translate(exc)
            if err is None:
                raise
            raise err from exc
        self._watcher, self._watch_id = watcher, watch_id

    def _pump(self) -> Literal["stopped", "compacted", "broken"]:
        while True:
            generation, item = self._inbox.get()
            if generation == -1 or self._stop.is_set():
                return "stopped"
            if generation != self._generation:
                continue  # left over from a previous stream
            if isinstance(item, etcd_errors.RevisionCompactedError):
                _log.warning(
                    "watch %s: revision %d compacted, re-listing", self._name, self.revision
                )
                self._close_watcher()
                return "compacted"
            if item is None or not hasattr(item, "events"):
                _log.debug("watch %s: stream ended (%s), re-subscribing", self._name, _short(item))
                self._close_watcher()
                return "broken"
            self._apply(item)

    def _apply(self, response: Any) -> None:
        for raw in response.events:
            kind: Literal["put", "delete"] = (
                "delete" if isinstance(raw, etcd_events.DeleteEvent) else "put"
            )
            kv = KeyValue(
                key=raw.key.decode(),
                value=bytes(raw.value),
                create_revision=int(raw.create_revision),
                mod_revision=int(raw.mod_revision),
                lease=int(raw.lease),
            )
            self.revision = max(self.revision, kv.mod_revision)
            self._safe(self._on_event, WatchEvent(kind, kv))
        if not response.events:  # a progress notification
            self.revision = max(self.revision, int(response.header.revision))

    def _close_watcher(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            try:
                watcher.cancel(self._watch_id)
                watcher.close()
            except Exception as exc:
                _log.debug("closing a watcher failed: %s", exc)

    def _safe(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            _log.exception("watch %s: callback failed", self._name)


def _quiet_when_closed(watcher: Any) -> None:
    """Keep etcd3's watcher thread from dying loudly when the client closes.

    That thread's first gRPC call raises ``ValueError("Cannot invoke RPC:
    Channel closed!")`` when the client was closed just before (a stop
    racing a re-subscribe), and etcd3 lets it escape the thread: an
    unhandled thread exception for nothing. The watch has ended then; our
    thread sees the stream end as usual. Replaces the instance's ``_run``,
    which etcd3 starts its thread with.
    """
    run = watcher._run

    def guarded() -> None:
        try:
            run()
        except ValueError as exc:
            if "Channel closed" not in str(exc):
                raise
            _log.debug("watcher thread ended: the etcd client was closed")

    watcher._run = guarded


def _short(item: Any) -> str:
    """One line for a stream's end (a gRPC error's repr spans five)."""
    details = getattr(item, "details", None)
    if callable(details):
        try:
            return str(details())
        except Exception:
            pass
    return " ".join(str(item).split())[:200]
