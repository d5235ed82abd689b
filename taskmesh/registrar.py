"""Publishing a node's actors in the cluster: names claimed, capabilities
advertised.

The node's :class:`~taskmesh.actors.system.ActorSystem` calls the
:class:`Registrar` as its name directory: ``claim`` in the spawning thread
before an actor starts (it raises :class:`~taskmesh.NameTaken` when another
node holds the name), ``release`` when an actor has ended.

An ended threaded actor releases its name in its own thread, before its
stop is acknowledged. An async actor ends on the actor system's event loop,
which must never wait for etcd (a release waited up to the etcd timeout, 2 s,
there, and every async actor of the node with it): its name goes to the
releaser thread, which withdraws what queued meanwhile in one transaction
per chunk and tries again while etcd does not answer. A spawn of a name
still queued or in flight waits for it; ``settle`` lets a thread that
stopped an async actor wait until its name is free in the cluster too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from taskmesh.cluster import ClusterMember
    from taskmesh.cluster.registrar import Withdrawal

__all__ = ["Registrar"]

log = logging.getLogger("taskmesh.node")

_CHUNK: Final = 512  # names per releaser turn (one etcd transaction per 64 ops)
_RETRY: Final = 0.5  # s between attempts while etcd does not answer
_CLAIM_WAIT: Final = 10.0  # s a claim waits for a release of its name in flight


class Registrar:
    """The node's name directory; ``member()`` is the node's cluster member,
    or None before the node has joined (then nothing is published)."""

    def __init__(self, member: Callable[[], ClusterMember | None]) -> None:
        self._member = member
        self._claimed: set[str] = set()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        # Names to release and the etcd operations that do it, in order.
        self._pending: dict[str, list[Withdrawal]] = {}
        self._in_flight: set[str] = set()  # taken by the releaser thread
        self._thread: threading.Thread | None = None
        self._closed = False
        self._failing = False  # the last attempt found etcd unavailable

    def claimed(self, names: list[str]) -> None:
        """``names`` were just claimed together (``Node.spawn_many``): their
        spawns skip the claim (any thread). Checking each one again costs a
        lookup under the routing lock, which the watch thread holds while it
        applies those very routes: measured, a third of a bulk spawn."""
        self._claimed.update(names)

    def unclaimed(self, names: list[str]) -> None:
        """Forget names :meth:`claimed` kept that will not be spawned."""
        self._claimed.difference_update(names)

    def claim(self, name: str, capabilities: tuple[str, ...], *, unique: bool) -> None:
        """Claim ``name`` (the spawning thread). A release of the same name
        still queued or in flight is waited for first, so it cannot delete
        the new claim; if etcd keeps it from finishing, the release is
        dropped and the claim finds the name still ours."""
        if self._claimed and name in self._claimed:
            self._claimed.discard(name)
            return
        if self._pending or self._in_flight:
            self._wait_released(name, _CLAIM_WAIT, cancel=True)
        member = self._member()
        if member is not None:
            member.register_actor(name, capabilities=capabilities, unique=unique)

    def release(self, name: str, *, wait: bool = True) -> None:
        """Withdraw ``name`` and its routes: now, in the calling thread, or
        (``wait=False``, the event loop) by the releaser thread soon."""
        member = self._member()
        if member is None:
            return
        if wait:
            member.unregister_actor(name)
            return
        ops = member.registrar.withdrawal([name])  # local bookkeeping only
        with self._lock:
            if self._closed or not ops:
                return
            self._pending[name] = ops
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="taskmesh-releaser", daemon=True
                )
                self._thread.start()
            self._changed.notify_all()

    def settle(self, name: str, timeout: float) -> bool:
        """Wait up to ``timeout`` s until a background release of ``name`` is
        done (any thread but the event loop); True if none is left. Returns
        False at once while etcd does not answer: the releaser keeps trying,
        and waiting would only hold the caller as long as the outage."""
        return self._wait_released(name, timeout, cancel=False)

    def close(self) -> None:
        """Stop the releaser (the node stops; its lease's revocation has
        withdrawn whatever is still queued)."""
        with self._lock:
            self._closed = True
            self._pending.clear()
            self._changed.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(5)

    def _wait_released(self, name: str, timeout: float, *, cancel: bool) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while name in self._pending or name in self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0 or (self._failing and not cancel):
                    if cancel and name in self._pending:
                        del self._pending[name]
                        return True
                    return False
                self._changed.wait(left)
            return True

    # --- the releaser thread ---------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._changed.wait()
                if self._closed:
                    return
                batch = {name: self._pending.pop(name) for name in list(self._pending)[:_CHUNK]}
                self._in_flight.update(batch)
            ok = self._withdraw([op for ops in batch.values() for op in ops])
            with self._lock:
                self._in_flight.clear()
                self._failing = not ok
                if not ok and not self._closed:
                    for name, ops in batch.items():  # claims waited for these: none dropped
                        self._pending.setdefault(name, ops)
                self._changed.notify_all()
                if not ok:
                    self._changed.wait(_RETRY)

    def _withdraw(self, ops: list[Withdrawal]) -> bool:
        member = self._member()
        if member is None:
            return True  # left the cluster: the lease's end withdrew them
        try:
            member.registrar.withdraw(ops)
        except Exception as exc:
            log.warning("could not release actor names yet (will retry): %s", exc)
            return False
        return True
