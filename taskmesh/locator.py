"""The locator: where the actor behind a name or a capability is now.

A node and a client both have one. It answers from local state only, so a
send costs no etcd round trip: first the node's own actors (a node's
``ActorSystem``), then the cluster's caches (names, routes and members,
fed by etcd watches). It turns a cluster record (node, address, actor) into
a transport ref carrying the peer's CURVE key, keeps those refs, and routes
around peers the transport reports suspect or down.

It is the :class:`~taskmesh.addressing.Resolver` behind ``NamedRef`` and
``CapabilityRef``; every method runs in the caller's thread unless it says
otherwise.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from typing import TYPE_CHECKING

from taskmesh.addressing import Gate, Located, RetryTracer, Target
from taskmesh.errors import ClusterError, ConfigError

if TYPE_CHECKING:
    from taskmesh.actors.deadletters import DeadLetters
    from taskmesh.actors.system import ActorSystem
    from taskmesh.cluster import ClusterMember, MemberEvent, NameRecord
    from taskmesh.ops.latency import LatencyHistogram
    from taskmesh.transport import Transport

__all__ = ["Locator"]

log = logging.getLogger("taskmesh.locator")

_MISS_LOOKUPS_PER_S = 50.0
"""etcd reads a second allowed for names missing from the cache (see
:meth:`Locator.resolve`); past that, a miss is a miss at once."""
_MISS_PAUSE = 5.0
"""Seconds without such reads after one failed (etcd away: serve from caches)."""


class Locator:
    """Finds targets for one node (``system`` and ``node_id`` given) or one
    client (neither). Thread-safe. ``ask_timeout`` is the default timeout
    of asks through it; ``ask_latency`` records their latency; ``tracing``
    traces asks with retries (None: off)."""

    def __init__(
        self,
        view: ClusterMember,
        transport: Transport,
        *,
        dead_letters: DeadLetters,
        ask_timeout: float,
        ask_latency: LatencyHistogram,
        curve: bool,
        system: ActorSystem | None = None,
        node_id: str | None = None,
        tracing: RetryTracer | None = None,
    ) -> None:
        self.dead_letters = dead_letters
        self.ask_timeout = ask_timeout
        self.ask_latency = ask_latency
        self.tracing = tracing
        self.limits: dict[str, Gate] = {}
        """Gates of the limited capabilities; a limiter keeps it (taskmesh.platform)."""
        self._view = view
        self._transport = transport
        self._curve = curve
        self._system = system
        self._node_id = node_id
        self._node_of: dict[str, str] = {}  # peer address -> node id
        self._refs: dict[tuple[str, str, str], Target] = {}
        self._named: dict[str, tuple[NameRecord, Located]] = {}
        self._routes: dict[str, tuple[int, list[Located]]] = {}
        # A random start: short-lived callers (a CLI call is one) spread out.
        self._turn = itertools.count(random.randrange(1 << 16))
        self._miss_budget = _MISS_LOOKUPS_PER_S
        self._miss_at = time.monotonic()
        self._miss_paused_until = 0.0
        self._where: dict[str, tuple[str, str]] = {}  # node -> (address, incarnation) last seen
        view.on_member_event(self._member_event)

    # --- Resolver --------------------------------------------------------------

    def resolve(self, name: str) -> Located | None:
        """The node and actor holding ``name`` now, or None.

        A name missing from the watch-fed cache is read from etcd once
        before it counts as missing: a name claimed a moment ago on another
        node (its spawn has returned) may not have reached this node's
        cache yet, and a message to it must not be lost for that. Those
        reads are rate-limited, so a flood of sends to unknown names cannot
        flood etcd.
        """
        system = self._system
        if system is not None:
            local = system.local(name)
            if local is not None:
                return self._node_id or "", local
        record = self._view.lookup(name)
        if record is None:
            record = self._read_through(name)
            if record is None:
                return None
        named = self._named.get(name)
        if named is not None and named[0] is record:
            return named[1]
        if record.node == self._node_id:
            return None  # ours in etcd, not (or no longer) alive here
        located = (record.node, self.ref(record.node, record.address, name))
        if len(self._named) > 100_000:
            self._named.clear()
        self._named[name] = (record, located)
        return located

    def _read_through(self, name: str) -> NameRecord | None:
        now = time.monotonic()
        if now < self._miss_paused_until:
            return None
        self._miss_budget = min(
            _MISS_LOOKUPS_PER_S, self._miss_budget + (now - self._miss_at) * _MISS_LOOKUPS_PER_S
        )
        self._miss_at = now
        if self._miss_budget < 1:
            return None
        self._miss_budget -= 1
        try:
            return self._view.names.fetch(name)
        except ClusterError as exc:
            self._miss_paused_until = time.monotonic() + _MISS_PAUSE
            log.info("reading name %r from etcd failed: %s", name, exc)
            return None

    def route(
        self, capability: str, strategy: str, key: str | None, exclude: frozenset[str]
    ) -> list[Located]:
        """Holders of ``capability`` picked by ``strategy``, skipping the
        nodes in ``exclude``. Round robin reads a list kept per capability
        and rebuilt only when the routing table changes."""
        if strategy == "round_robin":
            targets = self._round_robin(capability)
            if not targets:
                return []
            n = len(targets)
            start = next(self._turn)
            for i in range(n):
                located = targets[(start + i) % n]
                if located[0] not in exclude:
                    return [located]
            return []
        try:
            routes = self._view.route(capability, strategy, key=key, exclude=exclude)  # type: ignore[arg-type]
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return [t for t in (self._target(r.node, r.address, r.actor) for r in routes) if t]

    def _round_robin(self, capability: str) -> list[Located]:
        table = self._view.routing
        version = table.version  # read first: a change meanwhile makes the list stale
        cached = self._routes.get(capability)
        if cached is not None and cached[0] == version:
            return cached[1]
        targets = [
            t
            for t in (self._target(r.node, r.address, r.actor) for r in table.routes(capability))
            if t
        ]
        self._routes[capability] = (version, targets)
        return targets

    def _target(self, node: str, address: str, actor: str) -> Located | None:
        if node == self._node_id:
            local = self._system.local(actor) if self._system is not None else None
            return (node, local) if local is not None else None
        return node, self.ref(node, address, actor)

    def reachable(self, node: str) -> bool:
        """A live member the transport does not suspect (from caches)."""
        if node == self._node_id:
            return True
        view = self._view
        return view.membership.get(node) is not None and node not in view.routing.suspects

    # --- transport refs ----------------------------------------------------------

    def ref(self, node: str, address: str, name: str) -> Target:
        """A transport ref to actor ``name`` on ``node`` at ``address``."""
        ref = self._refs.get((node, address, name))
        if ref is not None:
            return ref
        self._node_of[address] = node
        server_key = None
        if self._curve:
            info = self._view.membership.get(node)
            if info is not None and info.public_key:
                server_key = info.public_key.encode()
        ref = self._transport.ref(address, name, server_key=server_key)
        if server_key is not None or not self._curve:  # a keyless CURVE ref may gain a key
            self._refs[(node, address, name)] = ref
        return ref

    def on_peer_event(self, address: str, state: str) -> None:
        """Transport listener (the transport's I/O thread): route around a
        peer that is suspect or down, and back to it once it answers. Only
        the node's current address counts: a link to where a restarted node
        used to listen says nothing about the node now."""
        node = self._node_of.get(address)
        if node is None:
            return
        info = self._view.membership.get(node)
        if info is not None and info.address != address:
            return
        if state in ("suspect", "down"):
            self._view.mark_suspect(node)
        elif state == "up":
            self._view.clear_suspect(node)

    def _member_event(self, event: MemberEvent) -> None:
        """Members watch thread: follow a node to its new address or
        incarnation (a restart), and forget suspicion of a node that left.

        A node restarted elsewhere (a pod, any node on port 0) is routed to
        again at once, not suspected for what its old address did. The link
        to an old address is left alone: a process draining there (a
        rolling update starts the new pod before the old one has finished)
        still answers what it was asked; the transport closes links that
        stay down.
        """
        info = event.member
        node = info.node
        if node == self._node_id:
            return
        before = self._where.get(node)
        if event.kind == "leave":
            self._where.pop(node, None)
            self._view.clear_suspect(node)  # whoever comes back under the name starts afresh
            return
        now = (info.address, info.incarnation)
        self._where[node] = now
        if before == now:
            return
        if before is not None and before[0] != info.address:
            for key in [k for k in self._refs if k[1] == before[0]]:
                self._refs.pop(key, None)
            self.forget()
        if before is not None or event.kind == "join":
            self._view.clear_suspect(node)

    def forget(self) -> None:
        """Drop every cached target (for tests and reconfiguration)."""
        self._named.clear()
        self._routes.clear()

    def __repr__(self) -> str:
        return f"<Locator node={self._node_id!r}>"
