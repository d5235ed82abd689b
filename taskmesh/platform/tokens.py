"""A limit's rate: one token bucket in etcd, shared by every sender.

The bucket is one record, ``limit-buckets/<capability>`` = ``{tokens, at}``
(``at`` a wall-clock time). A process takes tokens from it in **batches**,
by a transaction guarded by the record's revision, and hands them out
locally: a message costs a lock and a counter, not an etcd round trip.

- A batch is sized to the process's demand (the senders waiting, plus what
  it used lately over `LOOKAHEAD`), up to the bucket's capacity.
- An empty bucket is not polled: the next take waits until the bucket
  holds a batch again (`FETCH_PERIOD` of the rate, at least one token),
  so a starved process asks etcd about 1 / `FETCH_PERIOD` times a second.
- Tokens not used within `HOLD` are dropped (never given back): a burst
  can exceed the rate by at most the tokens the processes hold.

Refill uses the clocks of the processes that take tokens: keep the nodes'
clocks synchronised (NTP). A clock behind the record's ``at`` refills
nothing until it catches up, so skew makes the rate lower, never higher.
While etcd is away no batch can be taken: senders wait, then time out.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

from taskmesh.cluster.etcd import Compare, Get, KeyValue, Put
from taskmesh.errors import ClusterError

from .admission import TOKEN, Callback, Fired, Grant, QueueGate, run
from .limits import Bucket, Limit

if TYPE_CHECKING:
    from .limiter import Limiter

__all__ = ["FETCH_PERIOD", "HOLD", "LOOKAHEAD", "RateGate"]

log = logging.getLogger("taskmesh.limits")

_monotonic = time.monotonic

FETCH_PERIOD = 0.05
"""Seconds of the rate a starved process waits to accumulate before it
takes a batch: bounds its etcd transactions to about 20 a second."""
LOOKAHEAD = 0.1
"""Seconds of the process's recent use a batch covers."""
HOLD = 1.0
"""Seconds a taken token stays usable."""
_RETRY_AFTER_ERROR = 0.25
_MIN_POLL = 0.005
_CONFLICTS = 8


class RateGate(QueueGate):
    """This process's share of one capability's token bucket.

    ``acquire`` runs in any sender's thread; ``service`` and the etcd
    transactions on the limiter's thread only.
    """

    def __init__(self, limiter: Limiter, limit: Limit) -> None:
        super().__init__(limiter)
        self.limit = limit
        self.key = limiter.keys.bucket(limit.capability)
        self.error = ""
        """Why the last batch could not be taken (etcd's error), or ''."""
        self._tokens = 0
        self._expires = 0.0
        self._used = 0
        self._demand = 0.0  # tokens a second this process used lately
        self._last_fetch = _monotonic()
        self._next_fetch = 0.0
        self._record: KeyValue | None = None  # the bucket as last read or written

    def take(self) -> bool:
        """Take a token at hand, if there is one (any thread): the fast path,
        a lock and a counter. (Tokens past `HOLD` are dropped by the
        limiter's thread.)"""
        with self.lock:
            if self._tokens and not self.tickets:
                self._tokens -= 1
                self._used += 1
                return True
            return False

    def acquire(self, deadline: float, callback: Callback | None) -> Grant | None:
        """A token now, or None; with ``callback``, queue a ticket that is
        called with a token or with None at ``deadline`` (any thread)."""
        with self.lock:
            if self._tokens and not self.tickets:
                self._tokens -= 1
                self._used += 1
                return TOKEN
            if callback is not None:
                self._queue(deadline, callback)
        return None

    def update(self, limit: Limit) -> None:
        """The limit was changed (lock held)."""
        self.limit = limit

    # --- the limiter's thread -------------------------------------------------

    def service(self, now: float) -> float | None:
        fired: Fired = []
        try:
            with self.lock:
                next_deadline = self._expire(now, fired)
                self._hand_out(now, fired)
                if not self.tickets:
                    if self._tokens:
                        return self._expires  # to drop them then
                    self.limiter.deactivate(self)
                    return None
                if now < self._next_fetch:
                    return min(self._next_fetch, next_deadline)
                want = self._want(now)
            taken, wait = self._take(want)
            with self.lock:
                now = _monotonic()
                if taken:
                    self._tokens += taken
                    self._expires = now + HOLD
                self._hand_out(now, fired)
                self._next_fetch = now + max(wait, _MIN_POLL) if not taken else now
                if not self.tickets:
                    return now  # once more: leave the active set under the lock
                return min(self._next_fetch, self._expire(now, fired))
        finally:
            run(fired)

    def _hand_out(self, now: float, fired: Fired) -> None:
        if self._tokens and now >= self._expires:
            self._tokens = 0
        while self._tokens and self.tickets:
            ticket = self.tickets.popleft()
            self._tokens -= 1
            self._used += 1
            fired.append((ticket.callback, TOKEN))

    def _want(self, now: float) -> int:
        """The batch to ask for: the waiting senders, or the recent use
        over `LOOKAHEAD` if more, within the bucket's capacity."""
        elapsed = now - self._last_fetch
        if elapsed > 0:
            used = self._used / elapsed
            self._demand = used if self._demand == 0 else (self._demand + used) / 2
        self._used = 0
        self._last_fetch = now
        want = max(len(self.tickets), math.ceil(self._demand * LOOKAHEAD))
        return max(1, min(want, math.floor(self.limit.capacity)))

    def _take(self, want: int) -> tuple[int, float]:
        """Take up to ``want`` tokens from the bucket: ``(taken, 0)``, or
        ``(0, seconds until a batch is there)``. No lock held."""
        limit = self.limit
        assert limit.rate is not None
        rate = limit.rate
        batch = min(want, max(1.0, rate * FETCH_PERIOD))
        client = self.limiter.client
        try:
            for _ in range(_CONFLICTS):
                now = time.time()
                record = self._record
                if record is None:
                    tokens, at = limit.capacity, now
                    guard = Compare(self.key, "create", "==", 0)
                else:
                    bucket = Bucket.decode(record.value)
                    tokens, at = bucket.tokens_at(now, limit), max(now, bucket.at)
                    guard = Compare(self.key, "mod", "==", record.mod_revision)
                if tokens < batch:
                    return 0, (batch - tokens) / rate
                take = min(want, math.floor(tokens))
                value = Bucket(tokens - take, at).encode()
                result = client.txn([guard], [Put(self.key, value)], [Get(self.key)])
                if result.succeeded:
                    self._record = KeyValue(self.key, value, 0, result.revision, 0)
                    self.error = ""
                    return take, 0.0
                held = result.gets[0] if result.gets else []
                self._record = held[0] if held else None
            return 0, _MIN_POLL  # contended: try again at once
        except ClusterError as error:
            if not self.error:
                log.warning("limit %r: no tokens from etcd: %s", limit.capability, error)
            self.error = str(error)
            return 0, _RETRY_AFTER_ERROR
