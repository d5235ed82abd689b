"""`ClusterMember`: one object through which a node uses the cluster layer.

It owns the etcd client and the node's lease, and wires membership, names,
routing, election and placement to them. Lifecycle::

    ClusterMember(settings) --start()--> registered --stop()--> stopped
                                 |  ^
              etcd unreachable   v  |  etcd back: new lease if needed,
              (caches serve)  degraded    re-register, re-claim, resync

Lookups and routing read local caches and keep answering while etcd is away.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace

from taskmesh.errors import ClusterError, ConfigError, EtcdUnavailable, NameTaken

from .compaction import Compactor
from .election import Election, Fence
from .etcd import EtcdClient, LeaseKeeper
from .keys import ClusterKeys, validate_name
from .load import LoadBoard
from .membership import Load, MemberEvent, MemberInfo, Membership
from .names import NameRecord, Names
from .placement import Placement, Singleton
from .registrar import Registrar, Registration
from .routing import Route, RoutingTable, Strategy

__all__ = ["ClusterMember", "ClusterSettings"]

_log = logging.getLogger("taskmesh.cluster")


def default_node_id() -> str:
    """``<host>-<pid>-<random>``: unique per process, readable in ``taskmesh members``."""
    host = "".join(c if c.isalnum() or c in "_.-" else "-" for c in socket.gethostname())
    return f"{host or 'node'}-{os.getpid()}-{secrets.token_hex(2)}"[:128]


@dataclass(frozen=True)
class ClusterSettings:
    """How a node joins the cluster. Built by the CLI; never read from the environment.

    ``lease_ttl`` (seconds) bounds how long a dead node stays visible;
    ``load_interval`` is how often load is sampled (and a reader's copy
    refreshed), ``load_refresh`` how often it is published when it did not
    change meaningfully; ``etcd_timeout``
    bounds each etcd call; ``compaction_interval`` is how often the leader
    compacts etcd history older than that interval (0: never);
    ``claim_timeout`` is how long a registration waits for a lease (etcd
    away, a lease lost on a swamped machine) before it fails.
    """

    etcd: str | Sequence[str]
    cluster: str = "default"
    node: str = field(default_factory=default_node_id)
    address: str = ""
    capabilities: frozenset[str] = frozenset()
    public_key: str | None = None
    lease_ttl: int = 3
    load_interval: float = 2.0
    load_refresh: float = 30.0
    etcd_timeout: float = 2.0
    start_timeout: float = 15.0
    compaction_interval: float = 300.0
    claim_timeout: float = 15.0
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_cert: str | None = None
    cert_key: str | None = None
    cert_cert: str | None = None

    def __post_init__(self) -> None:
        if self.compaction_interval < 0:
            raise ConfigError("compaction_interval must be 0 (off) or positive")
        if self.lease_ttl < 2:
            raise ConfigError(f"lease_ttl must be at least 2 seconds, not {self.lease_ttl}")
        for name in (
            "load_interval",
            "load_refresh",
            "etcd_timeout",
            "start_timeout",
            "claim_timeout",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")


class ClusterMember:
    """This node's membership in one cluster: registration, names, routes, leadership.

    ``mailbox_total`` is read on the load thread; ``singleton_start`` and
    ``singleton_stop`` run as described in `Placement`. An ``observer``
    (a client that hosts no actors) watches the cluster without taking a
    lease: it is not a member, cannot lead, and cannot register actors.
    Thread-safe.
    """

    def __init__(
        self,
        settings: ClusterSettings,
        *,
        mailbox_total: Callable[[], int] | None = None,
        messages_total: Callable[[], int] | None = None,
        singleton_start: Callable[[str, str], None] | None = None,
        singleton_stop: Callable[[str], None] | None = None,
        observer: bool = False,
    ) -> None:
        self.settings = settings
        self.observer = observer
        self.node = validate_name(settings.node, "node id")
        self.keys = ClusterKeys(settings.cluster)
        self.incarnation = secrets.token_hex(8)
        """This membership's token: names and the member record carry it."""
        self.client = EtcdClient(
            settings.etcd,
            timeout=settings.etcd_timeout,
            user=settings.user,
            password=settings.password,
            ca_cert=settings.ca_cert,
            cert_key=settings.cert_key,
            cert_cert=settings.cert_cert,
        )
        self.lease = LeaseKeeper(self.client, settings.lease_ttl)
        # Hook order matters: the member key goes first under a new lease.
        self.membership = Membership(
            self.client,
            self.lease,
            self.keys,
            self.node,
            address=settings.address,
            capabilities=settings.capabilities,
            public_key=settings.public_key,
            incarnation=self.incarnation,
        )
        self.loads = LoadBoard(
            self.client,
            self.lease,
            self.keys,
            self.node,
            interval=settings.load_interval,
            refresh=settings.load_refresh,
            mailbox_total=mailbox_total,
            messages_total=messages_total,
            publisher=not observer,
        )
        self.names = Names(
            self.client, self.lease, self.keys, self.node, incarnation=self.incarnation
        )
        self.routing = RoutingTable(
            self.client, self.lease, self.keys, self.node, load_of=self._load_of
        )
        self.election = Election(self.client, self.lease, self.keys, self.node)
        self.placement = Placement(
            self.client,
            self.lease,
            self.keys,
            self.node,
            election=self.election,
            membership=self.membership,
            start=singleton_start,
            stop=singleton_stop,
            load_of=self._load_of,
        )
        self.registrar = Registrar(
            self.client,
            self.lease,
            self.keys,
            self.names,
            self.routing,
            claim_timeout=settings.claim_timeout,
            observer=observer,
        )
        self.compactor = Compactor(
            self.client,
            self.election,
            self.keys,
            self.node,
            interval=0.0 if observer else settings.compaction_interval,
        )
        self.names.on_lost(self._name_lost)
        if not observer:  # keys deleted behind our back while the lease lives: put them back
            for part in (self.membership, self.names, self.routing):
                part.on_missing = self.lease.republish
        self._started = False

    def _name_lost(self, name: str) -> None:
        """Lease thread: an actor whose name went elsewhere stops advertising too."""
        try:
            self.routing.unpublish(name)
        except ClusterError as exc:
            _log.info("withdrawing routes of lost name %r failed: %s", name, exc)

    def _load_of(self, node: str) -> Load | None:
        return self.loads.get(node)

    # --- lifecycle --------------------------------------------------------

    def start(self) -> ClusterMember:
        """Join: watch the cluster, take a lease and register; wait until registered.

        An observer only starts watching. Raises `EtcdUnavailable` if etcd
        does not answer within ``start_timeout``.
        """
        timeout = self.settings.start_timeout
        try:
            for part in (self.membership, self.names, self.routing, self.election):
                part.start(timeout=timeout)
            if not self.observer:
                self.lease.start()
                self._wait_registered(timeout)
            self.placement.start(timeout=timeout)
            self.compactor.start()
            self.loads.start()
        except BaseException:
            self.stop()
            raise
        self._started = True
        _log.info("node %s joined cluster %s", self.node, self.keys.cluster)
        return self

    def _wait_registered(self, timeout: float) -> None:
        """Wait for the first lease and registration. If our node name is held
        by another incarnation, wait until that holder's lease would have
        expired (its granted TTL, plus a second): a node killed a moment ago
        and restarted (a pod, a crash loop) gets its name back once the dead
        process's lease lapses, while a live holder, which renews its lease,
        makes us fail with `NodeNameTaken`."""
        end = time.monotonic() + timeout
        grace_until: float | None = None
        while True:
            try:
                self.lease.wait_acquired(min(0.25, max(0.0, end - time.monotonic())))
                return
            except EtcdUnavailable:
                conflict = self.membership.conflict
                now = time.monotonic()
                if conflict is not None:
                    if grace_until is None:
                        grace_until = now + self._holder_ttl() + 1.0
                        end = max(end, grace_until)
                    if now >= grace_until:
                        raise conflict from None
                    continue
                if now >= end:
                    raise

    def _holder_ttl(self) -> float:
        """The granted TTL of the lease holding our name (ours if unknown)."""
        lease = self.membership.conflict_lease
        try:
            granted = self.client.granted_ttl(lease) if lease else -1
        except ClusterError:  # etcd away: assume our own TTL
            granted = -1
        return float(granted if granted > 0 else self.settings.lease_ttl)

    def stop(self, *, deregister: bool = True) -> None:
        """Leave: stop singletons, revoke the lease (deleting our keys), stop watching."""
        self.loads.stop()
        self.compactor.stop()
        self.placement.stop()
        self.election.stop()
        self.lease.stop(revoke=deregister)
        for part in (self.routing, self.names, self.membership):
            part.stop()
        self.client.close()
        self._started = False

    def __enter__(self) -> ClusterMember:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- actors -----------------------------------------------------------

    def register_actor(
        self,
        name: str,
        *,
        capabilities: Iterable[str] = (),
        address: str | None = None,
        unique: bool = True,
    ) -> NameRecord | None:
        """Register an actor: claim its name (if ``unique``) and publish its capabilities.

        Concurrent calls share etcd transactions. Without a valid lease it
        waits up to ``claim_timeout`` for one. Raises `NameTaken` when
        another node holds the name, `EtcdUnavailable` when etcd stayed
        away (nothing is left registered).
        """
        where = address or self.settings.address
        return self.registrar.register(Registration(name, tuple(capabilities), where, unique))

    def register_many(
        self,
        names: Sequence[str],
        *,
        capabilities: Iterable[str] = (),
        address: str | None = None,
    ) -> list[NameRecord]:
        """Register many actors with the same capabilities: all or none.

        One etcd transaction per 64 names. Raises `NameTaken` naming every
        name another node holds, after withdrawing the ones it claimed; a
        later `register_actor` of a name registered here costs no round trip.
        """
        where = address or self.settings.address
        caps = tuple(capabilities)
        outcomes = self.registrar.register_many([Registration(n, caps, where) for n in names])
        taken = [n for n, o in zip(names, outcomes, strict=True) if isinstance(o, NameTaken)]
        if taken:
            self.registrar.unregister_many(
                [n for n, o in zip(names, outcomes, strict=True) if not isinstance(o, NameTaken)]
            )
            shown = ", ".join(repr(n) for n in taken[:5]) + (" ..." if len(taken) > 5 else "")
            raise NameTaken(f"{len(taken)} of {len(names)} names are held by other nodes: {shown}")
        return [o for o in outcomes if isinstance(o, NameRecord)]

    def unregister_actor(self, name: str) -> None:
        """Withdraw an actor's routes and release its name."""
        self.routing.unpublish(name)
        self.names.release(name)

    def on_name_lost(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(name)`` when a held name was taken by another node during an
        etcd outage (on the lease thread); its routes are already withdrawn, and
        the actor holding it should stop.
        """
        self.names.on_lost(listener)

    def lookup(self, name: str) -> NameRecord | None:
        """Who holds ``name`` (from cache): its node and address, or None."""
        return self.names.lookup(name)

    def route(
        self,
        capability: str,
        strategy: Strategy = "round_robin",
        *,
        key: str | None = None,
        exclude: Collection[str] = frozenset(),
    ) -> list[Route]:
        """Actors to send a ``capability`` message to (see `RoutingTable.pick`)."""
        return self.routing.pick(capability, strategy, key=key, exclude=exclude)

    def mark_suspect(self, node: str) -> None:
        """Route around ``node`` (the transport calls this on missed heartbeats)."""
        self.routing.mark_suspect(node)

    def clear_suspect(self, node: str) -> None:
        """Route to ``node`` again."""
        self.routing.clear_suspect(node)

    # --- cluster view -----------------------------------------------------

    def members(self) -> dict[str, MemberInfo]:
        """Live members by node id (from cache), with their load as last read.

        The first call reads the loads from etcd; later calls refresh a copy
        older than ``load_interval`` in the background.
        """
        members = self.membership.members()
        loads = self.loads.all(wait=self.loads.never_read)
        return {n: replace(m, load=loads.get(n, m.load)) for n, m in members.items()}

    def on_member_event(self, listener: Callable[[MemberEvent], None]) -> None:
        """Call ``listener`` on joins, leaves and updates (on the members watch thread)."""
        self.membership.subscribe(listener)

    def on_leadership(
        self,
        on_elected: Callable[[Fence], None] | None = None,
        on_demoted: Callable[[], None] | None = None,
    ) -> None:
        """Leadership callbacks (threads as in `Election`)."""
        self.election.subscribe(on_elected, on_demoted)

    @property
    def is_leader(self) -> bool:
        """Whether this node leads now (guard leader-only writes with `election`)."""
        return self.election.is_leader

    @property
    def leader(self) -> str | None:
        """The leading node's id, from cache."""
        return self.election.leader()

    @property
    def registered(self) -> bool:
        """Whether this node holds a valid lease with its keys published."""
        return self.lease.lease_id is not None

    def declare_singleton(self, name: str, capability: str) -> None:
        """Declare a cluster singleton to run on a node labelled ``capability``."""
        self.placement.declare(name, capability)

    def singletons(self) -> dict[str, Singleton]:
        """Declared singletons and where they run (from cache)."""
        return self.placement.singletons()
