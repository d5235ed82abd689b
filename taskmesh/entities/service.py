"""`Entities`: the sharded-entities part of one node or one client.

A client gets the sending half: the shard map and the router. A node gets
all of it: the same, plus the leader's placer (every node runs one; it
acts while the node leads), a :class:`~taskmesh.entities.host.ShardHost`
per type it hosts (``node.host``), the jobs thread, the store workers, and
the hook through which the transport hands it entity messages.

Entity messages from other nodes come in through the
:class:`~taskmesh.entities.inbox.EntityInbox` (why there is no second hop:
see there); messages sent from here go out through the
:class:`~taskmesh.entities.router.EntityRouter`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from taskmesh.actors.deadletters import DeadLetters
from taskmesh.entities.entity import Entity, check_entity_class
from taskmesh.entities.etcd_store import EtcdStore
from taskmesh.entities.host import ShardHost
from taskmesh.entities.inbox import EntityInbox
from taskmesh.entities.jobs import Jobs
from taskmesh.entities.layout import EntityKeys
from taskmesh.entities.ownership import NOT_MINE, Item
from taskmesh.entities.placer import ShardPlacer
from taskmesh.entities.ref import EntityRef
from taskmesh.entities.router import EntityRouter
from taskmesh.entities.shardmap import ShardMap
from taskmesh.entities.shards import shard_of, validate_entity_id, validate_entity_type
from taskmesh.entities.store import StateStore, StoreContext
from taskmesh.errors import ActorNotFound, AskTimeout, ClusterError, ConfigError, MailboxFull

if TYPE_CHECKING:
    from taskmesh.actors.system import ActorSystem
    from taskmesh.client import Client
    from taskmesh.cluster import ClusterMember
    from taskmesh.cluster.etcd import EtcdClient
    from taskmesh.node import Node
    from taskmesh.ops.latency import LatencyHistogram
    from taskmesh.transport import Transport

__all__ = ["Entities", "Observer", "for_client", "for_node"]

log = logging.getLogger("taskmesh.entities")

Observer = Callable[[str, str, str, int], None]
"""``observer(event, type, id, token)`` with event ``activate`` or
``passivate`` (the event loop): a hook for tests that record activations."""

_KEPT_REFS = 100_000


class Entities:
    """See the module docstring. ``member`` and ``system`` make it a
    node's (hosting, placing); without them, a client's (sending only).
    ``reachable(node)`` says whether a node is a live, unsuspected member."""

    def __init__(
        self,
        *,
        cluster: str,
        etcd: EtcdClient,
        transport: Transport,
        dead_letters: DeadLetters,
        reachable: Callable[[str], bool],
        ask_timeout: float,
        ask_latency: LatencyHistogram,
        send_timeout: float = 10.0,
        member: ClusterMember | None = None,
        system: ActorSystem | None = None,
        address: str = "",
        public_key: str | None = None,
        margin: float = 0.25,
    ) -> None:
        self.cluster = cluster
        self.keys = EntityKeys(cluster)
        self.etcd = etcd
        self.transport = transport
        self.dead_letters = dead_letters
        self.reachable = reachable
        self.ask_timeout = ask_timeout
        self.ask_latency = ask_latency
        self.send_timeout = send_timeout
        self.member = member
        self._system = system
        self.node_id = member.node if member is not None else ""
        """This node's id ("" for a client)."""
        self.address = address
        self.public_key = public_key
        self.map = ShardMap(etcd, self.keys)
        self.hosts: dict[str, ShardHost] = {}
        self.jobs = Jobs()
        self.router = EntityRouter(self)
        self.inbox = EntityInbox(self)
        self.placer = (
            ShardPlacer(self, member.election, margin=margin) if member is not None else None
        )
        self.observer: Observer | None = None
        self._refs: dict[tuple[str, str], EntityRef] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._started = False
        self.closed = False
        """Set once closing: entity messages that still come are refused."""
        if member is not None:
            self.map.subscribe(self._on_map)

    # --- lifecycle (caller's thread) --------------------------------------------------

    def start(self, *, timeout: float = 10.0) -> Entities:
        """Watch the shard map (and, on a node, place shards when leading)."""
        self.map.start(timeout=timeout)
        member = self.member
        if member is not None:
            keeper = member.lease
            keeper.on_acquired(self._lease_acquired)
            keeper.on_renewed(self._lease_renewed)
            keeper.on_lost(lambda lease: self._each_host(ShardHost.on_lease_lost))
            assert self.placer is not None
            self.placer.start()
        self._started = True
        return self

    def drain(self, grace: float, *, linger: float = 0.5) -> None:
        """Hand every shard of this node over before it leaves (a graceful
        stop): refuse new shards, let the entities passivate, give the
        shards back, wait up to ``grace`` s for them to have new owners and
        for the messages held here to reach them, then keep forwarding for
        ``linger`` s more (senders learn the new owners meanwhile)."""
        hosts = list(self.hosts.values())
        if not hosts:
            return
        deadline = time.monotonic() + grace
        for host in hosts:
            host.draining = True
            self._publish(host)
            for shard in host.owned():
                host.release(shard)
        types = [host.entity_type for host in hosts]

        def settled() -> bool:
            for host in hosts:
                if any(slot.state != NOT_MINE for slot in host.slots):
                    return False
            return all(self.router.pending_count(t) == 0 or not self._others(t) for t in types)

        while time.monotonic() < deadline and not settled():
            time.sleep(0.02)  # polling: there is no event for "every shard has a new owner"
        end = min(deadline, time.monotonic() + linger)
        while time.monotonic() < end:
            time.sleep(0.02)  # keep forwarding what senders with old maps still send here

    def _others(self, entity_type: str) -> bool:
        """Whether another node may take shards of ``entity_type``."""
        view = self.map.view(entity_type)
        return view is not None and any(
            node != self.node_id and not host.draining for node, host in view.hosts.items()
        )

    def close(self) -> None:
        """Stop placing, stop what still runs here, stop watching (idempotent)."""
        self.closed = True
        if self.placer is not None:
            self.placer.stop()
        for host in self.hosts.values():
            host.closing = True
        self._stop_activations()
        self.jobs.stop()
        self.router.stop()
        self.map.stop()
        for host in self.hosts.values():
            if host.store is not None:
                host.store.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _stop_activations(self) -> None:
        system = self._system
        cells = [
            cell for host in self.hosts.values() for s in host.slots for cell in s.cells.values()
        ]
        if system is None or not cells:
            return
        from taskmesh.actors.loopcell import stop_cells

        for cell in cells:
            cell.lost = True  # the node goes: like a crash, no on_passivate
        done = system._loop.submit(stop_cells([(cell, 1.0) for cell in cells], "stopped"))
        try:
            done.get(10.0)
        except AskTimeout:
            log.warning("%d entities did not stop in time", len(cells))

    # --- hosting (caller's thread) ------------------------------------------------------

    @property
    def system(self) -> ActorSystem:
        if self._system is None:
            raise ConfigError("only a node hosts entities")
        return self._system

    @property
    def executor(self) -> ThreadPoolExecutor:
        """Worker threads for state stores (made on first use)."""
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(4, thread_name_prefix="taskmesh-entity-store")
            return self._executor

    def host(self, entity_cls: type[Entity], store: StateStore | None = None) -> None:
        """Host ``entity_cls`` here (see ``Node.host``)."""
        check_entity_class(entity_cls)
        member = self.member
        if member is None:
            raise ConfigError("only a node hosts entities")
        entity_type = entity_cls.entity_type
        view = self.map.view(entity_type)
        if view is not None and view.shards and view.shards != entity_cls.shards:
            raise ConfigError(
                f"entity type {entity_type!r} has {view.shards} shards on the other nodes, "
                f"but {entity_cls.__name__}.shards is {entity_cls.shards}"
            )
        if store is not None and not entity_cls.persistent:
            raise ConfigError(
                f"{entity_cls.__name__} is not persistent: a store is for persistent = True"
            )
        if store is None and entity_cls.persistent:
            store = EtcdStore()
        if store is not None and entity_cls.persistent:
            store.bind(StoreContext(self.cluster, self.etcd, self.keys))
        with self._lock:
            if entity_type in self.hosts:
                raise ConfigError(f"entity type {entity_type!r} is hosted here already")
            host = ShardHost(self, entity_cls, store)
            self.hosts[entity_type] = host
        self.system._loop.start()
        keeper = member.lease
        lease = keeper.lease_id
        if lease is not None:
            host.on_lease(lease, keeper.deadline)
            try:
                revision = self._publish(host)
            except ClusterError as error:  # the lease hook publishes it when etcd is back
                log.info("publishing that this node hosts %r failed: %s", entity_type, error)
            else:
                # Refs made here right after this call must know the type.
                self.map.wait_revision(revision, timeout=self.ask_timeout)
        self._sweep(host)

    def _publish(self, host: ShardHost) -> int:
        """Put the host's record under its lease; returns the revision (0: no lease)."""
        lease = host.lease
        if not lease:
            return 0
        record = host.record(draining=host.draining)
        key = self.keys.host(host.entity_type, record.node)
        return self.etcd.put(key, record.to_bytes(), lease=lease)

    def _sweep(self, host: ShardHost) -> None:
        timeout = host.idle_timeout
        if timeout is None:
            return
        interval = min(max(timeout / 4, 0.05), 30.0)
        loop = self.system._loop.start()

        def tick() -> None:  # the event loop
            if host.closing:
                return
            try:
                host.sweep()
            finally:
                loop.call_later(interval, tick)

        loop.call_soon_threadsafe(loop.call_later, interval, tick)

    def _each_host(self, action: Callable[[ShardHost], None]) -> None:
        for host in list(self.hosts.values()):
            try:
                action(host)
            except Exception:
                log.exception("entity host %r failed", host)

    def _lease_acquired(self, lease: int) -> None:
        """Lease thread: a new lease: publish the hosts under it (retried on error)."""
        deadline = self.member.lease.deadline if self.member is not None else 0.0
        for host in list(self.hosts.values()):
            host.on_lease(lease, deadline)
            self._publish(host)

    def _lease_renewed(self, lease: int) -> None:
        if self.member is None:
            return
        deadline = self.member.lease.deadline
        for host in list(self.hosts.values()):
            host.on_lease(lease, deadline)

    def _on_map(self, entity_type: str) -> None:
        host = self.hosts.get(entity_type)
        if host is not None:
            host.on_map()

    # --- messages -------------------------------------------------------------------

    def ref(self, entity_type: str, entity_id: str) -> EntityRef:
        """A ref to one entity (validates the type and id). Refs are kept
        (up to 100,000), so asking for one again costs a dictionary lookup
        and reuses what it learnt about the route."""
        key = (entity_type, entity_id)
        ref = self._refs.get(key)
        if ref is None:
            ref = EntityRef(self, validate_entity_type(entity_type), validate_entity_id(entity_id))
            if len(self._refs) >= _KEPT_REFS:
                self._refs.clear()
            self._refs[key] = ref
        return ref

    def owner_of(self, entity_type: str, entity_id: str) -> str:
        """The node that owns the entity's shard now, from the map ("" if none)."""
        view = self.map.view(entity_type)
        if view is None or not view.shards:
            return ""
        owner = view.owner(shard_of(entity_id, view.shards))
        return owner.node if owner is not None else ""

    def refuse(self, entity_type: str, item: Item, reason: str) -> None:
        """A message that cannot be delivered: a dead letter, and an ask's
        error (any thread)."""
        entity_id, message, reply, _, _, _ = item
        recipient = f"{entity_type}/{entity_id}" if entity_id else f"{entity_type} (barrier)"
        if reply is None:
            self.dead_letters.record(recipient, message, reason)
            return
        error: Exception
        if reason == "expired":
            self.dead_letters.record(recipient, message, reason, "deadline passed while held")
            error = AskTimeout(f"the ask to entity {recipient!r} expired before it was handled")
        elif reason in ("mailbox_full", "buffer_full"):
            error = MailboxFull(f"entity {recipient!r}: {reason.replace('_', ' ')}")
        elif reason == "no_shard_owner":
            error = ActorNotFound(f"entity {recipient!r}: its shard found no owner in time")
        else:
            error = ActorNotFound(f"entity {recipient!r}: {reason.replace('_', ' ')}")
        reply.fail(error)

    # --- figures ----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Msgpack-ready figures per hosted type (what ``~?`` answers)."""
        return {
            "node": self.node_id,
            "types": {
                entity_type: host.stats() | {"held": self.router.pending_count(entity_type)}
                for entity_type, host in sorted(self.hosts.items())
            },
        }


def for_node(node: Node) -> Entities:
    """The entities part of a started node (not started itself)."""
    member = node.member
    assert member is not None
    return Entities(
        cluster=node.cluster_name,
        etcd=member.client,
        transport=node.transport,
        dead_letters=node.dead_letters,
        reachable=node.reachable,
        ask_timeout=node.ask_timeout,
        ask_latency=node.ask_latency,
        send_timeout=node.system.send_timeout,
        member=member,
        system=node.system,
        address=node.address,
        public_key=member.settings.public_key,
    )


def for_client(client: Client) -> Entities:
    """The sending half for a started client (not started itself)."""
    return Entities(
        cluster=client.cluster_name,
        etcd=client._view.client,
        transport=client.transport,
        dead_letters=client.dead_letters,
        reachable=client.reachable,
        ask_timeout=client.ask_timeout,
        ask_latency=client.ask_latency,
    )
