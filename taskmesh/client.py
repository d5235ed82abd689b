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
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskmesh.actors.deadletters import DeadLetters
from taskmesh.actors.future import Reply
from taskmesh.actors.names import validate_capability, validate_name
from taskmesh.addressing import CapabilityRef, Located, NamedRef
from taskmesh.cluster import ClusterMember, ClusterSettings, MemberInfo, Route
from taskmesh.entities.service import Entities, for_client
from taskmesh.errors import ClusterError, EtcdUnavailable
from taskmesh.locator import Locator
from taskmesh.ops.latency import LatencyHistogram
from taskmesh.platform.limiter import client_limiter
from taskmesh.platform.workflows import WorkflowInfo, WorkflowService
from taskmesh.tracing import start_tracing
from taskmesh.transport import Transport
from taskmesh.transport.security import load_keys

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from taskmesh.entities import EntityRef
    from taskmesh.platform import Workflow

__all__ = ["Client", "connect"]

log = logging.getLogger("taskmesh.client")


class Client:
    """See the module docstring. Thread-safe; close it when done (or use
    ``with``). Lookups read caches fed by etcd watches. ``ask_timeout`` is
    the default timeout of asks; ``send_timeout`` how long a tell to a full
    mailbox waits for room before it fails with :class:`MailboxFull`;
    ``flow_window`` how many tells to one actor may be on their way before
    the receiving node took them (0: no flow control; see
    :mod:`taskmesh.transport.flow`); ``otel_endpoint`` or ``tracer_provider``
    turns on tracing (see :class:`~taskmesh.Node` and :mod:`taskmesh.tracing`)."""

    def __init__(
        self,
        *,
        etcd: str | Sequence[str],
        cluster: str = "default",
        keys: str | Path | None = None,
        ask_timeout: float = 5.0,
        send_timeout: float = 10.0,
        flow_window: int = 2048,
        max_message_size: int = 4 * 1024 * 1024,
        etcd_timeout: float = 2.0,
        start_timeout: float = 10.0,
        etcd_user: str | None = None,
        etcd_password: str | None = None,
        etcd_ca: str | Path | None = None,
        etcd_cert: str | Path | None = None,
        etcd_key: str | Path | None = None,
        heartbeat_interval: float = 0.2,
        suspect_after: float = 0.9,
        otel_endpoint: str | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.cluster_name = cluster
        self.ask_timeout = ask_timeout
        self.ask_latency = LatencyHistogram()
        self.dead_letters = DeadLetters()
        self._keys = load_keys(keys) if keys is not None else None
        self._start_timeout = start_timeout
        self._endpoints = [etcd] if isinstance(etcd, str) else list(etcd)
        client_id = f"client-{secrets.token_hex(4)}"
        self.tracing = start_tracing(
            endpoint=otel_endpoint, provider=tracer_provider, node=client_id, cluster=cluster
        )
        self._view = ClusterMember(
            ClusterSettings(
                etcd=self._endpoints,
                cluster=cluster,
                node=client_id,
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
            dead_letters=self.dead_letters,
            keys=self._keys,
            max_message_size=max_message_size,
            heartbeat_interval=heartbeat_interval,
            suspect_after=suspect_after,
            send_timeout=send_timeout,
            window=flow_window,
            tracing=self.tracing,
        )
        self.locator = Locator(
            self._view,
            self.transport,
            dead_letters=self.dead_letters,
            ask_timeout=ask_timeout,
            ask_latency=self.ask_latency,
            curve=self._keys is not None,
            tracing=self.tracing,
        )
        self._named: dict[str, NamedRef] = {}
        self._workflows = WorkflowService(self.locator, self._view.client, cluster)
        self._entities: Entities | None = None
        self._entities_lock = threading.Lock()
        # the cluster's limits bind clients too (slots under a lease of the client's own)
        self._limiter = client_limiter(
            self._view, self.locator, send_timeout=send_timeout, ask_timeout=ask_timeout
        )
        self._started = False

    def start(self) -> Client:
        """Connect: load the caches and start the transport. Raises
        :class:`EtcdUnavailable` if etcd does not answer in time."""
        try:
            self._view.start()
            self._limiter.start(wait=self._start_timeout)
            self.transport.start()
            self.transport.subscribe(self.locator.on_peer_event)
        except EtcdUnavailable as error:
            self.close()
            raise EtcdUnavailable(
                f"cannot reach etcd at {', '.join(self._endpoints)}: {error}"
            ) from error
        except ClusterError:  # refused credentials, TLS: their own clear words
            self.close()
            raise
        except BaseException:
            self.close()
            raise
        self._started = True
        return self

    def close(self) -> None:
        """Stop watching and close the transport (idempotent)."""
        entities, self._entities = self._entities, None
        if entities is not None:
            entities.close()
        self._limiter.stop()
        self.transport.stop()
        self._view.stop(deregister=False)
        if self.tracing is not None:
            self.tracing.close()  # exports the spans still buffered
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
        ref = self._named.get(name)
        if ref is None:
            ref = NamedRef(self.locator, validate_name(name))
            if len(self._named) >= 10_000:
                self._named.clear()
            self._named[name] = ref
        return ref

    def capability(self, capability: str, *, strategy: str = "round_robin") -> CapabilityRef:
        """A ref to whichever actor holds ``capability``."""
        return CapabilityRef(self.locator, validate_capability(capability), strategy)

    def entity(self, entity_type: str, entity_id: str) -> EntityRef:
        """A ref to the entity ``entity_id`` of ``entity_type`` (see
        ``Node.host``). The first call starts watching the shard map."""
        entities = self._entities
        if entities is None:
            with self._entities_lock:
                if self._entities is None:
                    self._entities = for_client(self).start(timeout=self._start_timeout)
                entities = self._entities
        return entities.ref(entity_type, entity_id)

    def tell(self, name: str, message: Any, *, block: bool = True) -> None:
        """Tell the actor ``name``; at most once. A full mailbox blocks until
        there is room, within ``send_timeout``; ``block=False`` sheds at once
        (see ``NamedRef.tell``)."""
        self.ref(name).tell(message, block=block)

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

    # --- workflows (caller's thread; see taskmesh.platform) -----------------

    def run(
        self, workflow: Workflow, *, timeout: float = 60.0, workflow_id: str | None = None
    ) -> Any:
        """Run ``workflow`` (``taskmesh.step/chain/group/chord``) in the
        cluster and wait up to ``timeout`` s for its result; raises
        ``WorkflowFailed`` or ``WorkflowTimeout`` (which carries the id)."""
        return self._workflows.run(workflow, timeout=timeout, workflow_id=workflow_id)

    def submit(self, workflow: Workflow, *, workflow_id: str | None = None) -> str:
        """Start ``workflow`` in the cluster and return its id at once."""
        return self._workflows.submit(workflow, workflow_id=workflow_id)

    def result(self, workflow_id: str, *, timeout: float = 0.0) -> Any:
        """The result of the workflow ``workflow_id``, waiting up to
        ``timeout`` s if it still runs (see ``WorkflowService.result``)."""
        return self._workflows.result(workflow_id, timeout=timeout)

    def workflows(self) -> list[WorkflowInfo]:
        """Running and recently finished workflows, newest first."""
        return self._workflows.list()

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

    # --- lookups (caller's thread, from caches) -----------------------------

    def resolve(self, name: str) -> Located | None:
        """The node and ref holding ``name`` now, or None."""
        return self.locator.resolve(name)

    def reachable(self, node: str) -> bool:
        """Whether ``node`` is a live member this client does not suspect."""
        return self.locator.reachable(node)


def connect(*, etcd: str | Sequence[str], cluster: str = "default", **options: Any) -> Client:
    """Connect a :class:`Client` to a cluster and return it, started."""
    return Client(etcd=etcd, cluster=cluster, **options).start()
