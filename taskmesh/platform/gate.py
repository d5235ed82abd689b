"""A limit as senders meet it: the gate a capability's messages pass.

``CapabilityRef`` finds a `CapabilityGate` in its resolver's ``limits``
for a limited capability and sends through it:

- a tell waits for a rate token, within the tell's send timeout (then it
  is a ``limited`` dead letter and raises `LimitTimeout`);
- an ask first takes a concurrency slot (the capability's, or its key's
  for a per-key limit), then a rate token, both within the ask's timeout,
  and frees the slot when its answer, error or timeout arrives;
- ``ask_async`` never blocks: without a token at hand it returns a reply
  at once and sends when the token comes (on the limiter's sending thread);
- ``tell_async`` awaits the token without blocking the event loop.

A broadcast takes one token, and an ask's retries none of their own.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from taskmesh.actors.future import Reply, no_waiting_on
from taskmesh.errors import ConfigError, LimitTimeout

from .admission import TOKEN, Callback, Fired, Grant
from .limits import Limit
from .tokens import RateGate

if TYPE_CHECKING:
    from .limiter import Limiter
    from .slots import SlotGate

__all__ = ["CapabilityGate"]

_monotonic = time.monotonic
_GRACE = 1.0
"""Seconds a blocked sender waits past its deadline for the limiter's
thread to time its ticket out (it normally does so at the deadline)."""


class CapabilityGate:
    """One limited capability (see the module docstring). Its methods run
    in the sender's thread unless they say otherwise."""

    def __init__(self, limiter: Limiter, limit: Limit) -> None:
        self.limiter = limiter
        self.capability = limit.capability
        self.limit = limit
        self._rate: RateGate | None = RateGate(limiter, limit) if limit.rate else None
        self._shared: SlotGate | None = None
        self._keyed: dict[str, SlotGate] = {}
        if limit.concurrency and not limit.per_key:
            self._shared = limiter.slot_gate(limit.capability, None, limit.concurrency)

    def __repr__(self) -> str:
        return f"<CapabilityGate {self.capability!r}: {self.limit.describe()}>"

    # --- changes (the watch's thread, limiter's lock held) --------------------

    def update(self, limit: Limit, fired: Fired) -> None:
        old, self.limit = self.limit, limit
        if limit.rate and self._rate is not None:
            self._rate.update(limit)
        elif limit.rate:
            self._rate = RateGate(self.limiter, limit)
        elif self._rate is not None:
            self._rate.open_all(fired)
            self._rate = None
        if (old.concurrency is None, old.per_key) != (limit.concurrency is None, limit.per_key):
            self._close_slots(fired)
            if limit.concurrency and not limit.per_key:
                self._shared = self.limiter.slot_gate(limit.capability, None, limit.concurrency)
        elif limit.concurrency:
            for gate in self._slot_gates():
                gate.update(limit.concurrency)

    def close(self, fired: Fired) -> None:
        """The limit was removed: waiting senders go through (lock held)."""
        if self._rate is not None:
            self._rate.open_all(fired)
            self._rate = None
        self._close_slots(fired)

    def _close_slots(self, fired: Fired) -> None:
        for gate in self._slot_gates():
            gate.close(fired)
            self.limiter.slot_gates.pop(gate.gate_key, None)
        self._shared = None
        self._keyed = {}

    def _slot_gates(self) -> list[SlotGate]:
        return [self._shared] if self._shared is not None else list(self._keyed.values())

    def forget(self, gate: SlotGate) -> None:
        """An idle per-key gate is dropped (lock held)."""
        if gate.key is not None and self._keyed.get(gate.key) is gate:
            del self._keyed[gate.key]

    # --- admission ---------------------------------------------------------------

    def admit(self, key: str | None, deadline: float, callback: Callback | None) -> Grant | None:
        """Leave for one ask: a slot (or `TOKEN` without a concurrency
        limit) with a rate token taken, at once; else None, and with
        ``callback`` that is called later (on the limiter's thread) with
        the grant, or None at ``deadline``. Raises `ConfigError` for a
        per-key limit without a key."""
        limiter = self.limiter
        with limiter.lock:
            rate = self._rate
            slots = self._slots_for(key)
            if slots is None:
                slot: Grant | None = TOKEN
            else:
                after = (
                    None if callback is None else partial(self._slot_came, rate, deadline, callback)
                )
                slot = slots.acquire(deadline, after)
        if slot is None:
            return None
        if rate is None:
            return slot
        after_token = None if callback is None else partial(_token_came, slot, callback)
        if rate.acquire(deadline, after_token) is not None:
            return slot
        if callback is None:
            slot.release()
        return None

    def _slots_for(self, key: str | None) -> SlotGate | None:
        """The slot gate an ask with ``key`` passes (lock held)."""
        limit = self.limit
        if limit.concurrency is None:
            return None
        if not limit.per_key:
            return self._shared
        if key is None:
            raise ConfigError(
                f"the limit on {self.capability!r} counts concurrency per key: pass key= to the ask"
            )
        gate = self._keyed.get(key)
        if gate is None:
            gate = self._keyed[key] = self.limiter.slot_gate(
                self.capability, key, limit.concurrency
            )
        return gate

    def _slot_came(
        self, rate: RateGate | None, deadline: float, callback: Callback, slot: Grant | None
    ) -> None:
        """The limiter's (or a releasing) thread: a slot came; now a token."""
        if slot is None or rate is None:
            callback(slot)
            return
        if rate.acquire(deadline, partial(_token_came, slot, callback)) is not None:
            callback(slot)  # else `_token_came` calls it

    def _wait(self, key: str | None, timeout: float, what: str) -> Grant:
        """Block the sender's thread until admitted; raise `LimitTimeout`."""
        deadline = _monotonic() + timeout
        grant = self.admit(key, deadline, None)
        if grant is not None:
            return grant
        where = no_waiting_on(threading.get_ident())
        if where is None:
            waiter = _Waiter()
            grant = self.admit(key, deadline, waiter.settle) or waiter.wait(timeout + _GRACE)
            if grant is not None:
                return grant
        raise LimitTimeout(self._late(what, timeout, where))

    def _late(self, what: str, timeout: float, where: str | None = None) -> str:
        if where is not None:
            return (
                f"no token of the limit on {self.capability!r} at hand, and {where} must "
                "not wait: use `await ref.tell_async(...)` or `ask_async`"
            )
        errors = [g.error for g in (self._rate, self._shared) if g is not None and g.error]
        why = f" (etcd: {errors[0]})" if errors else ""
        return (
            f"{what} to {self.capability!r} got no token of its limit "
            f"({self.limit.describe()}) within {timeout:g} s{why}"
        )

    # --- sending ----------------------------------------------------------------

    def tell(self, message: Any) -> None:
        """Wait for a rate token within the send timeout, else make a
        ``limited`` dead letter and raise `LimitTimeout`."""
        rate = self._rate
        if rate is None or rate.take():
            return
        try:
            self._wait_rate(rate, self.limiter.send_timeout)
        except LimitTimeout as error:
            self.limiter.dead_letters.record(self.capability, message, "limited", str(error))
            raise

    def _wait_rate(self, rate: RateGate, timeout: float) -> None:
        deadline = _monotonic() + timeout
        where = no_waiting_on(threading.get_ident())
        if where is None:
            waiter = _Waiter()
            if (rate.acquire(deadline, waiter.settle) or waiter.wait(timeout + _GRACE)) is not None:
                return
        raise LimitTimeout(self._late("a tell", timeout, where))

    async def tell_async(self, message: Any) -> None:
        """``tell`` from a coroutine: awaits the token without blocking the loop."""
        rate = self._rate
        if rate is None or rate.take():
            return
        timeout = self.limiter.send_timeout
        deadline = _monotonic() + timeout
        loop = asyncio.get_running_loop()
        came: asyncio.Future[Grant | None] = loop.create_future()

        def settle(grant: Grant | None) -> None:  # the limiter's thread
            loop.call_soon_threadsafe(_resolve, came, grant)

        if rate.acquire(deadline, settle) is None and await came is None:
            error = LimitTimeout(self._late("a tell", timeout))
            self.limiter.dead_letters.record(self.capability, message, "limited", str(error))
            raise error

    def ask(self, send: Callable[[float], Any], key: str | None, timeout: float) -> Any:
        """Wait for leave within ``timeout``, then ``send(time left)``; the
        slot is freed when it returns or raises."""
        started = _monotonic()
        grant = self._wait(key, timeout, "an ask")
        try:
            return send(max(timeout - (_monotonic() - started), 0.0))
        finally:
            grant.release()

    def ask_async(self, send: Callable[[float], Reply], key: str | None, timeout: float) -> Reply:
        """Send now if admitted, else return a reply at once and send once
        admitted (on the limiter's sending thread); a reply that fails with
        `LimitTimeout` when leave did not come within ``timeout``."""
        deadline = _monotonic() + timeout
        grant = self.admit(key, deadline, None)
        if grant is not None:
            return _sent(send, timeout, grant)
        outer = Reply(deadline)

        def admitted(grant: Grant | None) -> None:  # the limiter's thread
            if grant is None:
                outer.fail(LimitTimeout(self._late("an ask", timeout)))
            else:
                self.limiter.defer(partial(_forward, send, deadline, grant, outer))

        grant = self.admit(key, deadline, admitted)
        return outer if grant is None else _sent(send, timeout, grant)


def _token_came(slot: Grant, callback: Callback, token: Grant | None) -> None:
    if token is None:
        slot.release()
        callback(None)
    else:
        callback(slot)


def _sent(send: Callable[[float], Reply], timeout: float, grant: Grant) -> Reply:
    try:
        reply = send(timeout)
    except BaseException:
        grant.release()
        raise
    if grant is not TOKEN:
        reply.add_done_callback(lambda _: grant.release())
    return reply


def _forward(send: Callable[[float], Reply], deadline: float, grant: Grant, outer: Reply) -> None:
    """The limiter's sending thread: send a deferred ask; its answer goes to ``outer``."""
    try:
        inner = send(max(deadline - _monotonic(), 0.0))
    except Exception as error:
        grant.release()
        outer.fail(error)
        return

    def done(reply: Reply) -> None:
        grant.release()
        try:
            outer.set(reply.get(0))
        except BaseException as error:
            outer.fail(error)

    inner.add_done_callback(done)


def _resolve(future: asyncio.Future[Grant | None], grant: Grant | None) -> None:
    if not future.done():
        future.set_result(grant)
    elif grant is not None:
        grant.release()


class _Waiter:
    """A blocked sender's ticket callback: a grant, or None at the deadline."""

    __slots__ = ("_event", "_lock", "abandoned", "grant", "settled")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self.grant: Grant | None = None
        self.settled = False
        self.abandoned = False

    def settle(self, grant: Grant | None) -> None:
        """The limiter's thread, or the one that freed a slot."""
        with self._lock:
            if self.abandoned:
                if grant is not None:
                    grant.release()
                return
            self.grant, self.settled = grant, True
        self._event.set()

    def wait(self, timeout: float) -> Grant | None:
        """The sender's thread."""
        self._event.wait(timeout)
        with self._lock:
            if not self.settled:
                self.abandoned = True
            return self.grant
