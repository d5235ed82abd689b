"""A client: code that hosts no actors but messages those of a cluster.

``taskmesh.connect(etcd=..., cluster=...)`` watches the cluster's members,
names and routes (it takes no lease and registers nothing, so it is not a
member) and sends through a transport with no inbound socket: from a plain
script, a web handler or a notebook.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from taskmesh.actors.deadletters import DeadLetters
from taskmesh.actors.future import Reply
from taskmesh.actors.names import validate_capability, validate_name
from taskmesh.addressing import CapabilityRef, Located, NamedRef
from taskmesh.cluster import ClusterMember, ClusterSettings, MemberInfo, Route
from taskmesh.errors import ClusterError, EtcdUnavailable
from taskmesh.ops.latency import LatencyHistogram
from taskmesh.peers import Peers
from taskmesh.transport import Transport

__all__ = ["Client", "connect"]

log = logging.getLogger("taskmesh.client")


class Client:
    """See the module docstring. Thread-safe; close it when done (or use
    ``with``). Lookups read caches fed by etcd watches."""

    def __init__(
        self,
        *,
        etcd: str | Sequence[str],
        cluster: str = "default",
        keys: str | Path | None = None,
        ask_timeout: float = 5.0,
        max_message_size: int = 4 * 1024 * 1024,
        etcd_timeout: float = 2.0,
        start_timeout: float = 10.0,
        etcd_user: str | None = None,
        etcd_password: str | None = None,
        etcd_ca: str | Path | None = None,
        etcd_cert: str | Path | None = None,
        etcd_key: str | Path | None = None,
    ) -> None:
        from taskmesh.node import load_keys

        self.cluster_name = cluster
        self.ask_timeout = ask_timeout
        self.ask_latency = LatencyHistogram()
        self.dead_letters = DeadLetters()
        self._keys = load_keys(keys) if keys is not None else None
        self._start_timeout = start_timeout
        self._endpoints = [etcd] if isinstance(etcd, str) else list(etcd)
        self._view = ClusterMember(
            ClusterSettings(
                etcd=self._endpoints,
                cluster=cluster,
                node=f"client-{secrets.token_hex(4)}",
                etcd_timeout=etcd_timeout,
                start_timeout=start_timeout,
                user=etcd_user,
                password=etcd_password,
                ca_cert=str(etcd_ca) if etcd_ca else None,
                cert_cert=str(etcd_cert) if etcd_cert else None,
                cert_key=str(etcd_key) if etcd_key else None,
            ),
            observer=True,  # watches only: takes no lease, publishes nothing
        )
        self.transport = Transport(
            listen=None,
            dead_letter=self.dead_letters.record,
            keys=self._keys,
            max_message_size=max_message_size,
        )
        self._peers = Peers(self._view, self.transport, curve=self._keys is not None)
        self._started = False

    def start(self) -> Client:
        """Connect: load the caches and start the transport. Raises
        :class:`EtcdUnavailable` if etcd does not answer in time."""
        try:
            self._view.start()
            self.transport.start()
            self.transport.subscribe(self._peers.on_peer_event)
        except ClusterError as error:
            self.close()
            raise EtcdUnavailable(
                f"cannot reach etcd at {', '.join(self._endpoints)}: {error}"
            ) from error
        except BaseException:
            self.close()
            raise
        self._started = True
        return self

    def close(self) -> None:
        """Stop watching and close the transport (idempotent)."""
        self.transport.stop()
        self._view.stop(deregister=False)
        self._started = False

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Client:
        """``async with taskmesh.connect(...) as client:`` (already started)."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close in a worker thread: closing joins the transport's thread,
        which must not block the event loop."""
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    # --- messaging (caller's thread) ---------------------------------------

    def ref(self, name: str) -> NamedRef:
        """A ref to the actor ``name``, wherever it runs."""
        return NamedRef(self, validate_name(name))

    def capability(self, capability: str, *, strategy: str = "round_robin") -> CapabilityRef:
        """A ref to whichever actor holds ``capability``."""
        return CapabilityRef(self, validate_capability(capability), strategy)

    def tell(self, name: str, message: Any) -> None:
        """Tell the actor ``name``; at most once."""
        self.ref(name).tell(message)

    def ask(
        self,
        name: str,
        message: Any,
        *,
        timeout: float | None = None,
        retries: int = 0,
        idempotency_key: str | None = None,
    ) -> Any:
        """Ask the actor ``name`` and wait for its reply (see ``NamedRef.ask``
        for ``retries`` and ``idempotency_key``)."""
        return self.ref(name).ask(
            message, timeout=timeout, retries=retries, idempotency_key=idempotency_key
        )

    def ask_async(
        self,
        name: str,
        message: Any,
        *,
        timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> Reply:
        """Ask the actor ``name``; returns a :class:`Reply` at once, to
        ``await`` (from any event loop) or ``get()``. No retries."""
        if timeout is None:
            timeout = self.ask_timeout
        return self.ref(name).ask_async(message, timeout=timeout, idempotency_key=idempotency_key)

    async def tell_async(self, name: str, message: Any) -> None:
        """Tell the actor ``name`` from a coroutine."""
        await self.ref(name).tell_async(message)

    # --- cluster view (caller's thread, from caches) ------------------------

    def members(self) -> dict[str, MemberInfo]:
        """Live members by node id."""
        return self._view.members()

    def actors(self) -> dict[str, tuple[str, str]]:
        """Cluster-wide names: name -> (node, address)."""
        return {name: (r.node, r.address) for name, r in self._view.names.all().items()}

    def routes(self) -> dict[str, list[Route]]:
        """Capability -> the actors that hold it."""
        return self._view.routing.capabilities()

    def leader(self) -> str | None:
        """The leading node's id, or None."""
        return self._view.leader

    # --- Resolver ------------------------------------------------------------

    def resolve(self, name: str) -> Located | None:
        record = self._view.lookup(name)
        if record is None:
            return None
        return record.node, self._peers.ref(record.node, record.address, name)

    def route(
        self, capability: str, strategy: str, key: str | None, exclude: frozenset[str]
    ) -> list[Located]:
        routes = self._view.route(capability, strategy, key=key, exclude=exclude)  # type: ignore[arg-type]
        return [(r.node, self._peers.ref(r.node, r.address, r.actor)) for r in routes]

    def reachable(self, node: str) -> bool:
        return self._peers.reachable(node)


def connect(*, etcd: str | Sequence[str], cluster: str = "default", **options: Any) -> Client:
    """Connect a :class:`Client` to a cluster and return it, started."""
    return Client(etcd=etcd, cluster=cluster, **options).start()
