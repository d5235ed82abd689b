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
from typing import Any, Literal

from taskmesh.actors.actor import Actor
from taskmesh.actors.names import validate_capability, validate_name
from taskmesh.actors.ref import ActorRef
from taskmesh.actors.supervisor import Backoff
from taskmesh.actors.system import ActorSystem
from taskmesh.addressing import CapabilityRef, Located, NamedRef
from taskmesh.cluster import ClusterMember, ClusterSettings, EmbeddedEtcd, MemberInfo
from taskmesh.cluster.member import default_node_id
from taskmesh.errors import ConfigError
from taskmesh.ops.latency import LatencyHistogram
from taskmesh.peers import Peers
from taskmesh.transport import CurveKeys, Transport

__all__ = ["Node", "load_keys"]

log = logging.getLogger("taskmesh.node")


class Node:
    """A process that hosts actors and joins a cluster.

    ``etcd`` is a URL or a list of URLs; ``None`` starts an embedded
    single-member etcd (data in ``data_dir``, or a temporary directory).
    ``listen`` is the ZeroMQ address (port 0 picks a free one);
    ``capabilities`` are node-level labels; ``keys`` a directory with a
    CURVE key pair (``node.key_secret``) and ``authorized/`` public keys.
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
        self.ask_timeout = ask_timeout
        self.ask_latency = LatencyHistogram()
        self.system = ActorSystem(
            mailbox_size=mailbox_size,
            ask_timeout=ask_timeout,
            send_timeout=send_timeout,
            max_restarts=max_restarts,
            within=within,
            backoff=backoff,
            directory=self,
        )
        self.system.node = self
        self.dead_letters = self.system.dead_letters
        self.transport = Transport(
            listen=listen,
            deliver=self.system.deliver,
            dead_letter=self.dead_letters.record,
            keys=self._keys,
            max_message_size=max_message_size,
        )
        self.embedded_etcd: EmbeddedEtcd | None = None
        self.member: ClusterMember | None = None
        self._peers: Peers | None = None
        self._singletons: dict[str, tuple[type[Actor], tuple[Any, ...], dict[str, Any]]] = {}
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
                    address=self.transport.address,
                    capabilities=self.capabilities,
                    public_key=self._keys.public_key.decode() if self._keys else None,
                    lease_ttl=max(2, round(self._lease_ttl)),
                    user=user,
                    password=password,
                    ca_cert=str(ca) if ca else None,
                    cert_cert=str(cert) if cert else None,
                    cert_key=str(key) if key else None,
                ),
                mailbox_total=lambda: sum(self.system.mailbox_depths().values()),
                messages_total=lambda: self.transport.counters.messages_in,
                singleton_start=self._start_singleton,
                singleton_stop=self._stop_singleton,
            ).start()
            self._peers = Peers(self.member, self.transport, curve=self._keys is not None)
            self.transport.subscribe(self._peers.on_peer_event)
        except BaseException:
            self.stop()
            raise
        log.info("node %s serving at %s", self.node_id, self.transport.address)
        return self

    @property
    def address(self) -> str:
        """The transport address peers dial."""
        return self.transport.address

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
        member, self.member = self.member, None
        if member is not None:
            try:
                member.stop(deregister=True)
            except Exception:
                log.warning("leaving the cluster failed; the lease will expire", exc_info=True)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (
            any(self.system.mailbox_depths().values()) or self.transport.snapshot()["asks_pending"]
        ):
            time.sleep(0.02)  # polling the drain; there is no event for "all mailboxes empty"
        self.system.stop()
        self.transport.stop()
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
        self._singletons[name] = (actor, args, kwargs)
        self.member.declare_singleton(name, capability)
        return self.ref(name)

    def _start_singleton(self, name: str, capability: str) -> None:
        """Placement callback (the placements watch thread): run it here."""
        declared = self._singletons.get(name)
        if declared is None:
            log.error(
                "singleton %r was placed on this node (label %r) but this node's code does "
                "not declare it; declare it with node.singleton() on every %r node",
                name, capability, capability,
            )  # fmt: skip
            return
        actor, args, kwargs = declared
        try:
            self.system.spawn(actor, *args, name=name, **kwargs)
        except Exception:
            log.exception("could not start singleton %r", name)

    def _stop_singleton(self, name: str) -> None:
        """Placement callback (watch or lease thread): stop it here, now."""
        self.system.stop_actor(name)

    def ref(self, name: str) -> NamedRef:
        """A ref to the actor ``name`` on any node of the cluster."""
        return NamedRef(self, validate_name(name))

    def capability(self, capability: str, *, strategy: str = "round_robin") -> CapabilityRef:
        """A ref to whichever actor holds ``capability`` (see CapabilityRef)."""
        return CapabilityRef(self, validate_capability(capability), strategy)

    def members(self) -> dict[str, MemberInfo]:
        """The cluster's live members by node id (from cache)."""
        return self.member.members() if self.member else {}

    @property
    def is_leader(self) -> bool:
        return bool(self.member and self.member.is_leader)

    # --- Resolver: how named and capability refs find targets -----------------

    def resolve(self, name: str) -> Located | None:
        local = self.system.local(name)
        if local is not None:
            return self.node_id, local
        member, peers = self.member, self._peers
        record = member.lookup(name) if member else None
        if record is None or peers is None or record.node == self.node_id:
            return None
        return record.node, peers.ref(record.node, record.address, name)

    def route(
        self, capability: str, strategy: str, key: str | None, exclude: frozenset[str]
    ) -> list[Located]:
        member, peers = self.member, self._peers
        if member is None or peers is None:
            return []
        targets: list[Located] = []
        for route in member.route(capability, strategy, key=key, exclude=exclude):  # type: ignore[arg-type]
            if route.node == self.node_id:
                local = self.system.local(route.actor)
                if local is not None:
                    targets.append((self.node_id, local))
            else:
                targets.append((route.node, peers.ref(route.node, route.address, route.actor)))
        return targets

    def reachable(self, node: str) -> bool:
        peers = self._peers
        return node == self.node_id or peers is None or peers.reachable(node)

    # --- NameDirectory: cluster-wide names (spawning / stopping thread) ------

    def claim(self, name: str, capabilities: tuple[str, ...], *, unique: bool) -> None:
        member = self.member
        if member is not None:
            member.register_actor(name, capabilities=capabilities, unique=unique)

    def release(self, name: str) -> None:
        member = self.member
        if member is not None:
            member.unregister_actor(name)


def load_keys(directory: str | Path) -> CurveKeys:
    """Load ``DIR/node.key_secret`` and the authorized keys in
    ``DIR/authorized/`` (the layout ``taskmesh keygen DIR`` writes)."""
    folder = Path(directory)
    secret = folder / "node.key_secret"
    if not secret.is_file():
        raise ConfigError(f"{secret} does not exist: create it with `taskmesh keygen {folder}`")
    return CurveKeys.from_files(secret, folder / "authorized")
