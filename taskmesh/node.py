"""The composition root: one :class:`Node` wires actors, transport and cluster.

Start-up order (``start``)::

    embedded etcd (if no endpoint) -> actor system -> transport (bind)
      -> cluster member (lease, member key) -> metrics endpoint

Shutdown (``stop``) runs it backwards and drains first: leave the cluster
(names and routes vanish, peers stop routing here), let queued work finish
within the grace period, stop actors in reverse start order, then close
the transport and the embedded etcd.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from taskmesh.actors.actor import Actor
from taskmesh.actors.names import validate_capability, validate_name
from taskmesh.actors.ref import ActorRef
from taskmesh.actors.supervisor import Backoff
from taskmesh.actors.system import ActorSystem
from taskmesh.addressing import CapabilityRef, NamedRef
from taskmesh.cluster import ClusterMember, ClusterSettings, EmbeddedEtcd, MemberInfo
from taskmesh.cluster.member import default_node_id
from taskmesh.deathwatch import DeathWatch, spawn_death_watch
from taskmesh.entities.service import Entities, for_node
from taskmesh.errors import ConfigError, NameTaken
from taskmesh.locator import Locator
from taskmesh.ops.introspect import spawn_introspector
from taskmesh.ops.latency import LatencyHistogram
from taskmesh.platform.services import NodeServices
from taskmesh.registrar import Registrar
from taskmesh.singletons import Singletons
from taskmesh.tracing import start_tracing
from taskmesh.transport import Transport
from taskmesh.transport.security import load_keys

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from taskmesh.entities import Entity, EntityRef, StateStore
    from taskmesh.platform import Limit, LimitInfo, Schedule, ScheduleInfo

__all__ = ["Node"]

log = logging.getLogger("taskmesh.node")


class Node:
    """A process that hosts actors and joins a cluster.

    ``etcd`` is a URL or a list of URLs; ``None`` starts an embedded
    single-member etcd (data in ``data_dir``, or a temporary directory).
    ``listen`` is the ZeroMQ address (port 0 picks a free one);
    ``capabilities`` are node-level labels; ``keys`` a directory with a
    CURVE key pair (``node.key_secret``) and ``authorized/`` public keys.
    ``advertise`` is the address published for peers when it differs from
    the bound one (a proxy, NAT, a Kubernetes service). ``heartbeat_interval``
    and ``suspect_after`` time the suspicion of silent peers; ``claim_timeout``
    bounds a named spawn's wait for etcd; ``start_timeout`` how long start
    waits for etcd's first answers (the membership snapshot, the tables'
    watches); ``compaction_interval`` the leader's compaction of etcd history. ``send_timeout`` bounds how long a
    tell to a full mailbox (here or on another node) waits for room;
    ``flow_window`` is how many tells to one remote actor may be on their
    way before its node took them (0: no flow control; see
    :mod:`taskmesh.transport.flow`). ``otel_endpoint`` (an OTLP/HTTP URL) or
    ``tracer_provider`` (an OpenTelemetry SDK provider of yours) turns on
    tracing across nodes (:mod:`taskmesh.tracing`; the ``otel`` extra).
    """

    def __init__(
        self,
        *,
        cluster: str = "default",
        etcd: str | Sequence[str] | None = None,
        listen: str = "tcp://127.0.0.1:0",
        name: str | None = None,
        capabilities: Iterable[str] = (),
        keys: str | Path | None = None,
        data_dir: str | Path | None = None,
        lease_ttl: float = 3.0,
        mailbox_size: int = 10_000,
        ask_timeout: float = 5.0,
        send_timeout: float = 10.0,
        flow_window: int = 2048,
        max_message_size: int = 4 * 1024 * 1024,
        grace_period: float = 10.0,
        max_restarts: int = 3,
        within: float = 5.0,
        backoff: Backoff | None = None,
        etcd_user: str | None = None,
        etcd_password: str | None = None,
        etcd_ca: str | Path | None = None,
        etcd_cert: str | Path | None = None,
        etcd_key: str | Path | None = None,
        claim_timeout: float = 15.0,
        start_timeout: float = 15.0,
        compaction_interval: float = 300.0,
        heartbeat_interval: float = 0.2,
        suspect_after: float = 0.9,
        advertise: str | None = None,
        otel_endpoint: str | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.cluster_name = cluster
        self.node_id = validate_name(name, what="node name") if name else default_node_id()
        self.capabilities = frozenset(validate_capability(c) for c in capabilities)
        self._etcd_endpoints = [etcd] if isinstance(etcd, str) else list(etcd or [])
        self._listen = listen
        self._keys = load_keys(keys) if keys is not None else None
        self._data_dir = Path(data_dir) if data_dir is not None else None
        if lease_ttl < 2:
            raise ConfigError(f"lease_ttl must be >= 2 s (etcd's minimum), got {lease_ttl!r}")
        self._lease_ttl = lease_ttl
        self._grace_period = grace_period
        self._etcd_auth = (etcd_user, etcd_password, etcd_ca, etcd_cert, etcd_key)
        self._claim_timeout = claim_timeout
        self._start_timeout = start_timeout
        self._advertise = advertise
        self._compaction_interval = compaction_interval
        self.ask_timeout = ask_timeout
        self.ask_latency = LatencyHistogram()
        """Latency of the asks this node sent through its refs."""
        self._registrar = Registrar(lambda: self.member)
        self.system = ActorSystem(
            mailbox_size=mailbox_size,
            ask_timeout=ask_timeout,
            send_timeout=send_timeout,
            max_restarts=max_restarts,
            within=within,
            backoff=backoff,
            directory=self._registrar,
        )
        self.system.node = self
        self.dead_letters = self.system.dead_letters
        self.tracing = start_tracing(
            endpoint=otel_endpoint, provider=tracer_provider, node=self.node_id, cluster=cluster
        )
        self.transport = Transport(
            listen=listen,
            deliver=self.system.deliver
            if self.tracing is None
            else self.tracing.deliverer(self.system),
            dead_letters=self.dead_letters,
            keys=self._keys,
            max_message_size=max_message_size,
            heartbeat_interval=heartbeat_interval,
            suspect_after=suspect_after,
            send_timeout=send_timeout,
            window=flow_window,
            room=self.system.on_space,
            tracing=self.tracing,
        )
        self.embedded_etcd: EmbeddedEtcd | None = None
        self.member: ClusterMember | None = None
        self.locator: Locator | None = None
        self._services: NodeServices | None = None
        self.entities: Entities | None = None
        """Sharded entities (``host``, ``entity``), once started."""
        self.death_watch: DeathWatch | None = None
        """Watches of actors across nodes (taskmesh.deathwatch), once started."""
        self._singletons = Singletons(self.system)
        self._state: Literal["new", "running", "stopping", "stopped"] = "new"
        self._lock = threading.Lock()

    # --- lifecycle (caller's thread) ----------------------------------------

    def start(self) -> Node:
        """Start everything and register in the cluster; returns self.

        Raises :class:`EtcdUnavailable` if etcd does not answer in time.
        """
        with self._lock:
            if self._state != "new":
                raise ConfigError(f"node is {self._state}; start() runs once")
            self._state = "running"
        try:
            if not self._etcd_endpoints:
                self.embedded_etcd = EmbeddedEtcd(data_dir=self._data_dir).start()
                self._etcd_endpoints = [self.embedded_etcd.endpoint]
                log.info("embedded etcd at %s", self.embedded_etcd.endpoint)
            self.transport.start()
            user, password, ca, cert, key = self._etcd_auth
            self.member = ClusterMember(
                ClusterSettings(
                    etcd=self._etcd_endpoints,
                    cluster=self.cluster_name,
                    node=self.node_id,
                    address=self._advertise or self.transport.address,
                    capabilities=self.capabilities,
                    public_key=self._keys.public_key.decode() if self._keys else None,
                    lease_ttl=max(2, round(self._lease_ttl)),
                    user=user,
                    password=password,
                    ca_cert=str(ca) if ca else None,
                    cert_cert=str(cert) if cert else None,
                    cert_key=str(key) if key else None,
                    claim_timeout=self._claim_timeout,
                    start_timeout=self._start_timeout,
                    compaction_interval=self._compaction_interval,
                ),
                mailbox_total=self.system.queued,
                messages_total=lambda: self.transport.snapshot()["messages_in"],
                singleton_start=self._singletons.start,
                singleton_stop=self._singletons.stop,
            ).start()
            self.locator = Locator(
                self.member,
                self.transport,
                dead_letters=self.dead_letters,
                ask_timeout=self.ask_timeout,
                ask_latency=self.ask_latency,
                curve=self._keys is not None,
                system=self.system,
                node_id=self.node_id,
                tracing=self.tracing,
            )
            self.transport.subscribe(self.locator.on_peer_event)
            self.entities = for_node(self).start(timeout=self._start_timeout)
            self.system.fallback_deliver = self.entities.inbox.deliver  # `~` targets
            self.system.fallback_room = self.entities.inbox.on_space
            self._services = NodeServices(self).start()  # scheduler, workflow coordinator
            # ops: the `_ops` actor the cluster page and `taskmesh dead-letters` ask
            spawn_introspector(self)
            self.death_watch = spawn_death_watch(self)  # `_deathwatch`: watch across nodes
        except BaseException:
            self.stop()
            raise
        log.info("node %s serving at %s", self.node_id, self.transport.address)
        return self

    @property
    def address(self) -> str:
        """The transport address peers dial (``advertise``, when given)."""
        return self._advertise or self.transport.address

    @property
    def etcd_endpoints(self) -> list[str]:
        """The etcd URLs this node uses (the embedded one's, if it started one)."""
        return list(self._etcd_endpoints)

    @property
    def running(self) -> bool:
        return self._state == "running"

    def ready(self) -> bool:
        """Registered in etcd and serving."""
        return self._state == "running" and self.member is not None and self.member.registered

    def stop(self, *, grace_period: float | None = None) -> None:
        """Drain and stop (idempotent): leave the cluster, let queued work
        finish within ``grace_period`` s, stop actors in reverse start order,
        then the transport and any embedded etcd."""
        with self._lock:
            if self._state in ("stopping", "stopped"):
                return
            self._state = "stopping"
        grace = self._grace_period if grace_period is None else grace_period
        entities = self.entities
        if entities is not None:
            entities.drain(grace)  # hand shards over while still a member
            entities.close()
        services, self._services = self._services, None
        if services is not None:
            services.stop()
        member, self.member = self.member, None
        if member is not None:
            try:
                member.stop(deregister=True)
            except Exception:
                log.warning("leaving the cluster failed; the lease will expire", exc_info=True)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (
            self.system.queued() or self.transport.snapshot()["asks_pending"]
        ):
            time.sleep(0.02)  # polling the drain; there is no event for "all mailboxes empty"
        self.system.stop()
        self._registrar.close()
        if services is not None:
            services.close()  # limits: after the actors, which obey them while they drain
        self.transport.stop()
        if self.tracing is not None:
            self.tracing.close()  # exports the spans still buffered
        if self.embedded_etcd is not None:
            self.embedded_etcd.stop()
        self._state = "stopped"
        log.info("node %s stopped", self.node_id)

    def __enter__(self) -> Node:
        return self.start() if self._state == "new" else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- actors (any thread) -------------------------------------------------

    def spawn(
        self,
        actor: type[Actor],
        *args: Any,
        name: str | None = None,
        restart: Literal["permanent", "transient", "temporary"] = "transient",
        mailbox_size: int | None = None,
        max_attempts: int | None = None,
        **kwargs: Any,
    ) -> ActorRef:
        """Start a top-level actor; its name is claimed cluster-wide in etcd
        and its class's ``capabilities`` are published. See
        ``ActorSystem.spawn``; raises :class:`NameTaken` if any node holds
        the name."""
        if self._state != "running":
            raise ConfigError("spawn needs a running node: call start() first")
        return self.system.spawn(
            actor,
            *args,
            name=name,
            restart=restart,
            mailbox_size=mailbox_size,
            max_attempts=max_attempts,
            **kwargs,
        )

    def spawn_many(
        self, actor: type[Actor], names: Iterable[str], *args: Any, **kwargs: Any
    ) -> list[ActorRef]:
        """Start one ``actor`` per name, claiming the names in batches (one etcd
        transaction per 64 instead of one per name). The names are claimed all
        or none: :class:`NameTaken` (naming the held ones) leaves none
        claimed and starts nothing. ``args``/``kwargs`` go to each spawn; if
        one fails, the actors already started stay and the names not yet
        used are released."""
        if self.member is None or self._state != "running":
            raise ConfigError("spawn_many needs a running node: call start() first")
        wanted = [validate_name(n) for n in names]
        local = set(self.system.names()) & set(wanted)
        if local:
            raise NameTaken(f"names taken by live actors here: {sorted(local)[:5]}")
        member = self.member
        member.register_many(wanted, capabilities=actor.capabilities)
        self._registrar.claimed(wanted)
        refs: list[ActorRef] = []
        try:
            for name in wanted:
                refs.append(self.spawn(actor, *args, name=name, **kwargs))
        except BaseException:
            self._registrar.unclaimed(wanted[len(refs) :])
            member.registrar.unregister_many(wanted[len(refs) + 1 :])  # claimed, never started
            raise
        return refs

    def singleton(
        self, actor: type[Actor], *args: Any, name: str, capability: str, **kwargs: Any
    ) -> NamedRef:
        """Declare a cluster singleton (a durable name): one instance of
        ``actor`` runs under ``name`` on one node labelled ``capability``,
        placed by the leader and re-placed on another such node when its
        node dies. Every node that may host it declares it the same way (in
        its ``--app`` code); the instance starts with fresh state (and an
        empty idempotency memory) wherever it lands. Returns a ref to it."""
        if self.member is None or self._state != "running":
            raise ConfigError("singleton needs a running node: call start() first")
        validate_name(name)
        validate_capability(capability)
        self._singletons.declare(name, actor, args, kwargs)
        self.member.declare_singleton(name, capability)
        return self.ref(name)

    def ref(self, name: str) -> NamedRef:
        """A ref to the actor ``name`` on any node of the cluster."""
        return NamedRef(self._locate(), validate_name(name))

    def capability(self, capability: str, *, strategy: str = "round_robin") -> CapabilityRef:
        """A ref to whichever actor holds ``capability`` (see CapabilityRef)."""
        return CapabilityRef(self._locate(), validate_capability(capability), strategy)

    def _locate(self) -> Locator:
        locator = self.locator
        if locator is None:
            raise ConfigError("refs need a running node: call start() first")
        return locator

    # --- sharded entities (any thread; see taskmesh.entities) --------------------

    def host(self, entity: type[Entity], *, store: StateStore | None = None) -> None:
        """Host shards of ``entity``'s type on this node: the leader assigns
        this node a share of them, and entities of those shards activate
        here. ``store`` keeps persistent entities' state (default: the
        cluster's etcd; ``taskmesh.PostgresStore(dsn)`` for larger fleets).
        Every node that hosts a type declares it the same way."""
        self._entities().host(entity, store)

    def entity(self, entity_type: str, entity_id: str) -> EntityRef:
        """A ref to the entity ``entity_id`` of ``entity_type``, wherever it runs."""
        return self._entities().ref(entity_type, entity_id)

    def _entities(self) -> Entities:
        entities = self.entities
        if entities is None or self._state != "running":
            raise ConfigError("entities need a running node: call start() first")
        return entities

    def reachable(self, node: str) -> bool:
        """Whether ``node`` is a live member this node does not suspect."""
        locator = self.locator
        return node == self.node_id or locator is None or locator.reachable(node)

    def members(self) -> dict[str, MemberInfo]:
        """The cluster's live members by node id (from cache)."""
        return self.member.members() if self.member else {}

    @property
    def is_leader(self) -> bool:
        return bool(self.member and self.member.is_leader)

    # --- schedules (any thread; see taskmesh.platform) ------------------------

    def schedule(self, name: str, **options: Any) -> Schedule:
        """Declare a cluster-wide schedule, stored in etcd and fired by the
        leader: ``cron="0 2 * * *"`` or ``every=30.0``, ``to=`` a name (a
        capability with ``capability=True``), ``message=``; options
        ``misfire`` ("skip" | "run_once"), ``misfire_grace``, ``timezone``,
        ``start``, ``timeout``, ``retries``, ``with_tick`` (see
        ``taskmesh.platform.Schedule`` and docs/platform.md). Declaring the
        same schedule again (from every node's app) changes nothing."""
        return self._platform().schedule(name, **options)

    def unschedule(self, name: str) -> bool:
        """Remove a schedule; True if it existed."""
        return self._platform().unschedule(name)

    def schedules(self) -> list[ScheduleInfo]:
        """Every schedule with its last and next tick, from etcd."""
        return self._platform().list_schedules()

    # --- limits (any thread; see taskmesh.platform.limits) -------------------

    def set_limit(self, capability: str, **options: Any) -> Limit:
        """Limit the messages to ``capability``, cluster-wide: ``rate=`` (asks
        and tells a second, ``burst=`` tokens at once), ``concurrency=``
        (asks in flight), ``per_key=True`` (concurrency per ``key=`` of the
        ask). Stored in etcd; every node and client obeys it. Setting it
        again replaces it (see docs/platform.md)."""
        return self._platform().set_limit(capability, **options)

    def remove_limit(self, capability: str) -> bool:
        """Remove the limit on ``capability``; True if there was one."""
        return self._platform().remove_limit(capability)

    def limits(self) -> list[LimitInfo]:
        """Every limit with its state now (tokens, slots held), from etcd."""
        return self._platform().list_limits()

    def _platform(self) -> NodeServices:
        if self._services is None:
            raise ConfigError("schedules and limits need a running node: call start() first")
        return self._services
