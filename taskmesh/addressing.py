"""Refs that work from anywhere in the cluster: by name and by capability.

A :class:`NamedRef` resolves its name at every send, first among this
node's actors, then in the cluster's name cache (no etcd round trip), so it
follows an actor that was restarted, re-created or re-placed on another
node. A :class:`CapabilityRef` asks the routing table for a holder of the
capability at every send.

Both offer at-least-once asks: ``ask(..., retries=N, idempotency_key=K)``
tries again, on another holder where there is one, when the node it asked
is known lost, also while the ask is in flight: the transport reports it
unreachable or suspects it (missed heartbeats), or its lease expired and it
left the member cache. It backs off exponentially, all inside the one
overall timeout. The key lets the receiving node answer a repeat from memory.

A capability with a cluster-wide limit (``node.set_limit``) has a
:class:`Gate` in the resolver's ``limits``; its messages pass the gate
(see :mod:`taskmesh.platform.gate`). An unlimited one costs one dict lookup.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from taskmesh.actors.deadletters import DeadLetters
from taskmesh.actors.future import Reply
from taskmesh.deathwatch import unwatch_named, watch_named
from taskmesh.errors import ActorNotFound, AskTimeout, ConfigError, PeerUnreachable
from taskmesh.ops.latency import LatencyHistogram

if TYPE_CHECKING:
    from taskmesh.actors.cell import Cell

__all__ = ["CapabilityRef", "Gate", "NamedRef", "Resolver", "Target"]

_perf_counter = time.perf_counter

_STRATEGIES = ("round_robin", "least_loaded", "consistent_hash", "broadcast")

_NO_NODES: frozenset[str] = frozenset()
_RETRY_FIRST = 0.05
_RETRY_MAX = 1.0
_LIVENESS_CHECK = 0.1
"""Seconds between checks, while an ask with retries waits, that its node is
still reachable: a node cut off without a TCP reset (a partition, a frozen
host) is given up once suspected or gone from the members, not at the
ask's timeout."""


class Target(Protocol):
    """A local ``ActorRef`` or a transport ``RemoteRef``."""

    def tell(self, message: Any, *, block: bool = True) -> None: ...

    def ask_async(
        self, message: Any, *, timeout: float | None = None, idempotency_key: str | None = None
    ) -> Reply: ...

    def begin_ask(
        self, message: Any, *, timeout: float | None = None, idempotency_key: str | None = None
    ) -> Reply:
        """An ask the caller waits for at once; a remote ref sends it and
        reads the answer in the caller's thread when it can (the fast path)."""
        ...


Located = tuple[str, Target]
"""``(node id, target)``."""

RetryHook = Callable[[int, Exception, "str | None"], None]
"""``on_retry(n, error, node)``: the last attempt failed with ``error`` on
``node`` (None: no holder was found) and retry ``n`` (from 1) follows."""


class RetryTracer(Protocol):
    """Tracing of asks with retries (see :mod:`taskmesh.tracing`)."""

    def retrying(self, what: str, retries: int) -> AbstractContextManager[RetryHook]:
        """A span around every attempt of one ask (caller's thread)."""
        ...


class Gate(Protocol):
    """A cluster-wide limit on one capability, as its senders pass it
    (:class:`taskmesh.platform.gate.CapabilityGate`); each method runs in
    the sender's thread and raises :class:`LimitTimeout` when no token
    came in time."""

    def tell(self, message: Any) -> None: ...

    async def tell_async(self, message: Any) -> None: ...

    def ask(self, send: Callable[[float], Any], key: str | None, timeout: float) -> Any:
        """Wait for leave, then ``send(seconds left)``."""
        ...

    def ask_async(self, send: Callable[[float], Reply], key: str | None, timeout: float) -> Reply:
        """``send(seconds left)`` now or once admitted; never blocks."""
        ...


_NO_LIMITS: Mapping[str, Gate] = {}


class Resolver(Protocol):
    """What named and capability refs need from a node or a client."""

    dead_letters: DeadLetters
    ask_timeout: float
    ask_latency: LatencyHistogram
    tracing: RetryTracer | None

    @property
    def limits(self) -> Mapping[str, Gate]:
        """Gates of the limited capabilities, by capability (kept by a limiter)."""
        ...

    def resolve(self, name: str) -> Located | None:
        """The node and actor holding ``name`` now, or None (caller's thread)."""
        ...

    def route(
        self, capability: str, strategy: str, key: str | None, exclude: frozenset[str]
    ) -> list[Located]:
        """Holders of ``capability`` picked by ``strategy``, skipping the
        nodes in ``exclude`` (caller's thread)."""
        ...

    def reachable(self, node: str) -> bool:
        """Whether ``node`` is a live member that the transport does not
        suspect, from caches (caller's thread)."""
        ...


def _ask_once(
    resolver: Resolver,
    located: Located | None,
    what: Callable[[], str],
    message: Any,
    timeout: float,
    idempotency_key: str | None,
) -> Any:
    """One ask, no retries: the fast path of a sync ask (caller's thread)."""
    started = _perf_counter()
    try:
        if located is None:
            raise ActorNotFound(f"no actor {what()} in the cluster")
        reply = located[1].begin_ask(message, timeout=timeout, idempotency_key=idempotency_key)
        return reply.get(timeout)
    except AskTimeout:
        raise AskTimeout(f"no reply from the actor {what()} within {timeout:g} s") from None
    finally:
        resolver.ask_latency.observe(_perf_counter() - started)


def _ask_with_retries(
    resolver: Resolver,
    pick: Callable[[frozenset[str]], Located | None],
    what: Callable[[], str],
    message: Any,
    timeout: float,
    retries: int,
    idempotency_key: str | None,
) -> Any:
    """The ask loop behind both ref kinds when ``retries`` > 0 (caller's thread)."""
    if retries < 0:
        raise ConfigError(f"retries must be >= 0, got {retries!r}")
    tracing = resolver.tracing
    if tracing is not None:
        with tracing.retrying(what(), retries) as on_retry:
            return _retry_loop(
                resolver, pick, what, message, timeout, retries, idempotency_key, on_retry
            )
    return _retry_loop(resolver, pick, what, message, timeout, retries, idempotency_key, None)


def _retry_loop(
    resolver: Resolver,
    pick: Callable[[frozenset[str]], Located | None],
    what: Callable[[], str],
    message: Any,
    timeout: float,
    retries: int,
    idempotency_key: str | None,
    on_retry: RetryHook | None,
) -> Any:
    started = _perf_counter()
    deadline = time.monotonic() + timeout
    lost: set[str] = set()
    attempt = 0
    try:
        while True:
            if lost:  # a node lost for a moment (a reset link) may serve again
                lost = {node for node in lost if not resolver.reachable(node)}
            located = pick(frozenset(lost) if lost else _NO_NODES)
            remaining = deadline - time.monotonic()
            try:
                if located is None:
                    raise ActorNotFound(f"no actor {what()} in the cluster")
                node, target = located
                reply = target.begin_ask(
                    message, timeout=remaining, idempotency_key=idempotency_key
                )
                if reply.done():
                    return reply.get(0)
                return _await(resolver, node, reply, deadline)
            except AskTimeout:
                raise AskTimeout(f"no reply from the actor {what()} within {timeout:g} s") from None
            except (PeerUnreachable, ActorNotFound) as error:
                if isinstance(error, PeerUnreachable) and located is not None:
                    lost.add(located[0])
                pause = min(_RETRY_FIRST * 2**attempt, _RETRY_MAX)
                if attempt >= retries or time.monotonic() + pause >= deadline:
                    raise
                attempt += 1
                if on_retry is not None:
                    on_retry(attempt, error, located[0] if located is not None else None)
                time.sleep(pause)  # backoff before the next holder
    finally:
        resolver.ask_latency.observe(_perf_counter() - started)


def _await(resolver: Resolver, node: str, reply: Reply, deadline: float) -> Any:
    """``reply.get`` that raises :class:`PeerUnreachable` once ``node`` is
    suspected or has left the cluster, so the caller retries elsewhere."""
    while True:
        remaining = deadline - time.monotonic()
        try:
            return reply.get(min(remaining, _LIVENESS_CHECK))
        except AskTimeout:
            if remaining <= _LIVENESS_CHECK:
                raise
        if not resolver.reachable(node):
            error = PeerUnreachable(f"node {node!r} is suspected or has left the cluster")
            reply.fail(error)  # given up: whoever watches the reply (a send span) hears it now
            raise error


async def _tell_async(target: Target, message: Any) -> None:
    """A local actor waits for room without blocking the loop; a remote
    tell never waits (the transport queues it)."""
    tell_async = getattr(target, "tell_async", None)
    if tell_async is not None:
        await tell_async(message)
    else:
        target.tell(message)


class NamedRef:
    """Reaches the actor registered under ``name``, wherever it runs."""

    __slots__ = ("_resolver", "name")

    def __init__(self, resolver: Resolver, name: str) -> None:
        self._resolver = resolver
        self.name = name

    def __repr__(self) -> str:
        return f"<NamedRef {self.name!r}>"

    def tell(self, message: Any, *, block: bool = True) -> None:
        """At most once; an unknown name or undeliverable message becomes a
        dead letter. A full mailbox, here or on another node, blocks until
        there is room within the send timeout (then ``mailbox_full`` dead
        letter and :class:`MailboxFull`); ``block=False`` sheds at once."""
        located = self._resolver.resolve(self.name)
        if located is None:
            self._resolver.dead_letters.record(self.name, message, "actor_not_found")
            return
        located[1].tell(message, block=block)

    async def tell_async(self, message: Any) -> None:
        """``tell`` from a coroutine: waits for room in a full local mailbox
        without blocking the event loop (see ``ActorRef.tell_async``)."""
        located = self._resolver.resolve(self.name)
        if located is None:
            self._resolver.dead_letters.record(self.name, message, "actor_not_found")
            return
        await _tell_async(located[1], message)

    def ask_async(
        self, message: Any, *, timeout: float | None = None, idempotency_key: str | None = None
    ) -> Reply:
        """Send and return a :class:`Reply` (``await`` it in async code, or
        ``get()`` it); raises :class:`ActorNotFound` at once if no actor
        holds the name. No retries."""
        located = self._resolver.resolve(self.name)
        if located is None:
            raise ActorNotFound(f"no actor named {self.name!r} in the cluster")
        return located[1].ask_async(message, timeout=timeout, idempotency_key=idempotency_key)

    def ask(
        self,
        message: Any,
        *,
        timeout: float | None = None,
        retries: int = 0,
        idempotency_key: str | None = None,
    ) -> Any:
        """Send and wait for the reply (see ``ActorRef.ask`` for the errors; a
        remote exception arrives as :class:`RemoteError`). With ``retries``,
        a lost node makes it try again (the name may have been re-placed)
        within ``timeout``; pass an ``idempotency_key`` so a repeat that
        reaches the same node is not run twice."""
        resolver = self._resolver
        if timeout is None:
            timeout = resolver.ask_timeout
        if not retries:
            located = resolver.resolve(self.name)
            return _ask_once(resolver, located, self._what, message, timeout, idempotency_key)

        def pick(lost: frozenset[str]) -> Located | None:
            located = resolver.resolve(self.name)
            if located is None:
                return None
            # The name may stay where it was: go back once that node is reachable
            # again (a healed partition), not only when the name moves.
            if located[0] in lost and not resolver.reachable(located[0]):
                return None
            return located

        return _ask_with_retries(
            resolver, pick, self._what, message, timeout, retries, idempotency_key
        )

    def _what(self) -> str:
        return f"named {self.name!r}"

    def _watch(self, watcher: Cell) -> None:
        """``Actor.watch`` of the actor behind the name, on any node (the
        watcher's thread; see taskmesh.deathwatch)."""
        watch_named(watcher, self.name)

    def _unwatch(self, watcher: Cell) -> None:
        unwatch_named(watcher, self.name)


class CapabilityRef:
    """Reaches an actor that holds ``capability``, picked by ``strategy``:
    ``round_robin`` (default), ``least_loaded``, ``consistent_hash`` (pass
    ``key=``: the same key reaches the same actor while membership is
    stable) or ``broadcast`` (tell only: every holder)."""

    __slots__ = ("_limits", "_resolver", "capability", "strategy")

    def __init__(self, resolver: Resolver, capability: str, strategy: str = "round_robin") -> None:
        if strategy not in _STRATEGIES:
            raise ConfigError(f"strategy must be one of {_STRATEGIES}, got {strategy!r}")
        self._resolver = resolver
        self._limits = getattr(resolver, "limits", _NO_LIMITS)
        self.capability = capability
        self.strategy = strategy

    def __repr__(self) -> str:
        return f"<CapabilityRef {self.capability!r} {self.strategy}>"

    def _targets(self, key: str | None, lost: frozenset[str] = frozenset()) -> list[Located]:
        if self.strategy == "consistent_hash" and key is None:
            raise ConfigError("consistent_hash routing needs key=")
        return self._resolver.route(self.capability, self.strategy, key, lost)

    def tell(self, message: Any, *, key: str | None = None, block: bool = True) -> None:
        """At most once to one holder (every holder with ``broadcast``);
        no holder makes a ``no_route`` dead letter. A full mailbox blocks or
        sheds as for ``NamedRef.tell``; a limited capability waits for a
        token within the send timeout (then ``LimitTimeout``)."""
        gate = self._limits.get(self.capability)
        if gate is not None:
            gate.tell(message)
        targets = self._targets(key)
        if not targets:
            self._resolver.dead_letters.record(self.capability, message, "no_route")
            return
        if self.strategy == "broadcast":
            for _, target in targets:
                target.tell(message, block=block)
        else:
            targets[0][1].tell(message, block=block)

    async def tell_async(self, message: Any, *, key: str | None = None) -> None:
        """``tell`` from a coroutine (see ``NamedRef.tell_async``)."""
        gate = self._limits.get(self.capability)
        if gate is not None:
            await gate.tell_async(message)
        targets = self._targets(key)
        if not targets:
            self._resolver.dead_letters.record(self.capability, message, "no_route")
            return
        for _, target in targets if self.strategy == "broadcast" else targets[:1]:
            await _tell_async(target, message)

    def ask_async(
        self,
        message: Any,
        *,
        timeout: float | None = None,
        key: str | None = None,
        idempotency_key: str | None = None,
    ) -> Reply:
        """Send to one holder and return a :class:`Reply` (awaitable). No
        retries. A limited capability sends once admitted (the reply fails
        with ``LimitTimeout`` if that takes longer than ``timeout``)."""
        if self.strategy == "broadcast":
            raise ConfigError("a broadcast has no single reply: use tell")
        gate = self._limits.get(self.capability)
        if gate is not None:
            send = partial(self._ask_async, message, key=key, idempotency_key=idempotency_key)
            return gate.ask_async(
                send, key, self._resolver.ask_timeout if timeout is None else timeout
            )
        targets = self._targets(key)
        if not targets:
            raise ActorNotFound(f"no actor holds the capability {self.capability!r}")
        return targets[0][1].ask_async(message, timeout=timeout, idempotency_key=idempotency_key)

    def _ask_async(
        self, message: Any, timeout: float | None, *, key: str | None, idempotency_key: str | None
    ) -> Reply:
        """``ask_async`` past the gate (also on the limiter's sending thread)."""
        targets = self._targets(key)
        if not targets:
            raise ActorNotFound(f"no actor holds the capability {self.capability!r}")
        return targets[0][1].ask_async(message, timeout=timeout, idempotency_key=idempotency_key)

    def ask(
        self,
        message: Any,
        *,
        timeout: float | None = None,
        key: str | None = None,
        retries: int = 0,
        idempotency_key: str | None = None,
    ) -> Any:
        """Send to one holder and wait for its reply. With ``retries``, a
        lost holder makes it try another one within ``timeout``. For
        ``consistent_hash``, ``key`` defaults to the ``idempotency_key`` so
        repeats of one key reach the same holder (and its memory)."""
        if self.strategy == "broadcast":
            raise ConfigError("a broadcast has no single reply: use tell")
        if key is None and self.strategy == "consistent_hash":
            key = idempotency_key
        if timeout is None:
            timeout = self._resolver.ask_timeout
        gate = self._limits.get(self.capability)
        if gate is not None:
            send = partial(
                self._ask, message, key=key, retries=retries, idempotency_key=idempotency_key
            )
            return gate.ask(send, key, timeout)
        if not retries:  # the common case, kept free of a call more
            targets = self._targets(key)
            located = targets[0] if targets else None
            return _ask_once(self._resolver, located, self._what, message, timeout, idempotency_key)
        return self._ask(
            message, timeout, key=key, retries=retries, idempotency_key=idempotency_key
        )

    def _ask(
        self,
        message: Any,
        timeout: float,
        *,
        key: str | None,
        retries: int,
        idempotency_key: str | None,
    ) -> Any:
        """``ask`` past the gate."""
        resolver = self._resolver
        if not retries:
            targets = self._targets(key)
            located = targets[0] if targets else None
            return _ask_once(resolver, located, self._what, message, timeout, idempotency_key)

        def pick(lost: frozenset[str]) -> Located | None:
            targets = self._targets(key, lost)
            return targets[0] if targets else None

        return _ask_with_retries(
            resolver, pick, self._what, message, timeout, retries, idempotency_key
        )

    def _what(self) -> str:
        return f"holding {self.capability!r}"
