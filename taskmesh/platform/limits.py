"""Cluster-wide limits per capability: their definitions, stored in etcd.

A limit is set once (``node.set_limit(...)`` or ``taskmesh limit CAP ...``)
and lives at ``limits/<capability>`` with no lease, so it outlives every
node; every node and client watches these records and obeys them (see
`taskmesh.platform.limiter`). Its live state sits beside it: the rate's
token bucket at ``limit-buckets/<capability>`` and the concurrency slots
held under ``limit-slots/<capability>/`` (see `taskmesh.platform.records`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from taskmesh.actors.names import validate_capability
from taskmesh.cluster.etcd import EtcdClient, KeyValue
from taskmesh.errors import ConfigError

from .records import PlatformKeys, decode, encode

__all__ = ["DEFAULT_BURST", "Limit", "LimitInfo", "LimitStore"]

DEFAULT_BURST = 0.1
"""Seconds of ``rate`` the bucket holds by default (at least one token): a
small burst, so that "at most R a second" holds over any second, not only
on average."""


@dataclass(frozen=True)
class Limit:
    """One capability's cluster-wide limit.

    - ``rate``: messages a second (asks and tells, from every sender of the
      cluster together) to the capability: a token bucket that holds
      ``burst`` tokens (default: a tenth of a second of ``rate``, at least
      one).
    - ``concurrency``: asks in flight to the capability, cluster-wide; a
      slot is taken before the ask is sent and freed when its answer (or
      its error, or its timeout) arrives, or when the asker's node is lost.
    - ``per_key``: count ``concurrency`` per ``key=`` given to the ask
      instead ("one in flight per customer"); an ask without a key is
      refused.
    """

    capability: str
    rate: float | None = None
    concurrency: int | None = None
    burst: float | None = None
    per_key: bool = False

    def __post_init__(self) -> None:
        validate_capability(self.capability)
        if self.rate is None and self.concurrency is None:
            raise ConfigError(f"a limit on {self.capability!r} needs rate= or concurrency=")
        if self.rate is not None and (
            isinstance(self.rate, bool)
            or not isinstance(self.rate, int | float)
            or not (self.rate > 0 and math.isfinite(self.rate))
        ):
            raise ConfigError(f"rate must be a number of messages a second > 0, got {self.rate!r}")
        if self.concurrency is not None and (
            isinstance(self.concurrency, bool)
            or not isinstance(self.concurrency, int)
            or self.concurrency < 1
        ):
            raise ConfigError(f"concurrency must be an int >= 1, got {self.concurrency!r}")
        if self.burst is not None:
            if self.rate is None:
                raise ConfigError("burst= needs rate=")
            if isinstance(self.burst, bool) or not (
                isinstance(self.burst, int | float) and 1 <= self.burst < math.inf
            ):
                raise ConfigError(f"burst must be a number of tokens >= 1, got {self.burst!r}")
        if self.per_key and self.concurrency is None:
            raise ConfigError("per_key=True counts concurrency per key: it needs concurrency=")

    @property
    def capacity(self) -> float:
        """Tokens the rate's bucket holds."""
        assert self.rate is not None
        return self.burst if self.burst is not None else max(1.0, self.rate * DEFAULT_BURST)

    def describe(self) -> str:
        parts = []
        if self.rate is not None:
            parts.append(f"rate {self.rate:g}/s (burst {self.capacity:g})")
        if self.concurrency is not None:
            per = " per key" if self.per_key else ""
            parts.append(f"concurrency {self.concurrency}{per}")
        return ", ".join(parts)

    def to_record(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "concurrency": self.concurrency,
            "burst": self.burst,
            "per_key": self.per_key,
        }

    @classmethod
    def from_record(cls, capability: str, record: dict[str, Any]) -> Limit:
        """A stored limit; raises `ConfigError` if it is not valid."""
        try:
            return cls(capability=capability, **record)
        except TypeError as error:
            raise ConfigError(f"stored limit {capability!r} is not readable: {error}") from None


@dataclass(frozen=True, slots=True)
class LimitInfo:
    """A limit and its state now, as ``taskmesh limits`` shows it.

    ``tokens``: what the rate's bucket holds (None: no rate, or not used
    yet); ``held``: concurrency slots held by nodes and clients (for a
    per-key limit, over every key); ``holders``: how many processes hold
    some; ``keys``: keys with slots held (per-key limits).
    """

    limit: Limit
    tokens: float | None
    held: int
    holders: int
    keys: int

    def to_json(self) -> dict[str, Any]:
        limit = self.limit
        return {
            "capability": limit.capability,
            "rate": limit.rate,
            "burst": limit.capacity if limit.rate is not None else None,
            "concurrency": limit.concurrency,
            "per_key": limit.per_key,
            "tokens": None if self.tokens is None else round(self.tokens, 2),
            "held": self.held,
            "holders": self.holders,
            "keys": self.keys,
        }


class LimitStore:
    """Reads and writes limit definitions in etcd (any thread)."""

    def __init__(self, client: EtcdClient, keys: PlatformKeys) -> None:
        self._client = client
        self.keys = keys

    def put(self, limit: Limit) -> Limit:
        """Set (or replace) ``limit``; every sender obeys it within a watch
        round trip."""
        self._client.put(self.keys.limit(limit.capability), encode(limit.to_record()))
        return limit

    def remove(self, capability: str) -> bool:
        """Remove the limit on ``capability`` and its state; True if it existed."""
        validate_capability(capability)
        existed = self._client.delete(self.keys.limit(capability))
        self._client.delete(self.keys.bucket(capability))
        self._client.delete_prefix(f"{self.keys.slots}{capability}/")
        return existed

    def get(self, capability: str) -> Limit | None:
        kv = self._client.get(self.keys.limit(validate_capability(capability)))
        return None if kv is None else self.parse(kv)

    def all(self) -> list[Limit]:
        kvs, _ = self._client.get_prefix(self.keys.limits)
        return sorted(
            (limit for limit in map(self.parse_or_none, kvs) if limit is not None),
            key=lambda limit: limit.capability,
        )

    def parse(self, kv: KeyValue) -> Limit:
        return Limit.from_record(PlatformKeys.tail(self.keys.limits, kv.key), decode(kv.value))

    def parse_or_none(self, kv: KeyValue) -> Limit | None:
        try:
            return self.parse(kv)
        except ConfigError:
            return None

    def infos(self) -> list[LimitInfo]:
        """Every limit with its state now (three etcd reads)."""
        limits = self.all()
        buckets, _ = self._client.get_prefix(self.keys.buckets)
        slots, _ = self._client.get_prefix(self.keys.slots)
        tokens: dict[str, float] = {}
        now = time.time()
        by_cap = {limit.capability: limit for limit in limits}
        for kv in buckets:
            capability = PlatformKeys.tail(self.keys.buckets, kv.key)
            limit = by_cap.get(capability)
            if limit is not None and limit.rate is not None:
                tokens[capability] = Bucket.decode(kv.value).tokens_at(now, limit)
        held: dict[str, int] = {}
        holders: dict[str, set[str]] = {}
        keys: dict[str, set[str]] = {}
        for kv in slots:
            parts = PlatformKeys.tail(self.keys.slots, kv.key).split("/")
            if len(parts) != 4 or parts[2] != "h":
                continue
            capability, gate, _, holder = parts
            count = int(decode(kv.value).get("n", 0))
            held[capability] = held.get(capability, 0) + count
            if count:
                holders.setdefault(capability, set()).add(holder)
                keys.setdefault(capability, set()).add(gate)
        return [
            LimitInfo(
                limit,
                tokens.get(limit.capability),
                held.get(limit.capability, 0),
                len(holders.get(limit.capability, ())),
                len(keys.get(limit.capability, ())) if limit.per_key else 0,
            )
            for limit in limits
        ]


@dataclass(frozen=True, slots=True)
class Bucket:
    """A rate's token bucket as stored: ``tokens`` left at wall-clock time ``at``."""

    tokens: float
    at: float

    @classmethod
    def decode(cls, raw: bytes) -> Bucket:
        record = decode(raw)
        try:
            return cls(float(record["tokens"]), float(record["at"]))
        except (KeyError, TypeError, ValueError):
            return cls(0.0, 0.0)

    def encode(self) -> bytes:
        return encode({"tokens": self.tokens, "at": self.at})

    def tokens_at(self, now: float, limit: Limit) -> float:
        """What the bucket holds at ``now``: refilled at ``rate`` since ``at``
        (a clock behind ``at`` refills nothing), up to its capacity."""
        assert limit.rate is not None
        return min(limit.capacity, self.tokens + max(0.0, now - self.at) * limit.rate)
