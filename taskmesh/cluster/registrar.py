"""`Registrar`: an actor's cluster registration (name and routes), batched and patient.

- **Batched.** Registrations from concurrent spawners share etcd
  transactions (`GroupCommit`), and `register_many` claims a whole list
  at once: one transaction per 64 names, each still create-if-absent.
- **Patient.** With no valid lease (a start on a swamped machine let it
  lapse, or etcd is away), a registration waits up to ``claim_timeout``
  for the keeper's next lease instead of failing at once.
- **Nothing left behind.** When etcd stays away past ``claim_timeout``,
  the registration fails with `EtcdUnavailable`. A transaction whose
  answer was lost may still have claimed the name: such names are
  withdrawn (only if still ours) as soon as etcd answers again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from taskmesh.errors import ClusterError, EtcdUnavailable, LeaseLost, NameTaken

from .batching import GroupCommit
from .etcd import Compare, Delete, EtcdClient, Get, LeaseKeeper, Put
from .keys import ClusterKeys
from .names import NameRecord, Names
from .routing import RoutingTable

__all__ = ["Registrar", "Registration", "Withdrawal"]

_log = logging.getLogger("taskmesh.cluster.registrar")

Withdrawal = tuple[Compare | None, Delete]
"""An etcd delete, guarded when it is a name (its value must still be ours)."""

_BATCH = 64
_IN_FLIGHT = 8
_MAX_OPS = 128


@dataclass(frozen=True, slots=True)
class Registration:
    """One actor to register: its name (claimed cluster-wide if ``unique``),
    the capabilities it advertises, and its transport address."""

    name: str
    capabilities: tuple[str, ...]
    address: str
    unique: bool = True


Outcome = NameRecord | None | NameTaken
"""The holder we now are (``unique``), None (not unique), or the refusal."""


class Registrar:
    """Registers actors for one node; thread-safe. See the module docstring."""

    def __init__(
        self,
        client: EtcdClient,
        keeper: LeaseKeeper,
        keys: ClusterKeys,
        names: Names,
        routing: RoutingTable,
        *,
        claim_timeout: float,
        observer: bool = False,
    ) -> None:
        self._client = client
        self._keeper = keeper
        self._keys = keys
        self._names = names
        self._routing = routing
        self.claim_timeout = claim_timeout
        self._observer = observer
        self._group: GroupCommit[Registration, Outcome] = GroupCommit(
            self._commit, max_batch=_BATCH
        )
        self._lock = threading.Lock()
        self._orphans: dict[str, Registration] = {}
        keeper.on_acquired(self._withdraw_orphans)
        keeper.on_renewed(self._withdraw_orphans_quietly)

    @property
    def batches(self) -> int:
        """Transactions batches committed so far."""
        return self._group.batches

    def register(self, registration: Registration) -> NameRecord | None:
        """Register one actor; concurrent callers share transactions.

        Raises `NameTaken` when another node holds the name, and
        `EtcdUnavailable` when etcd gave no lease within ``claim_timeout``.
        """
        self._check_observer()
        if self._already(registration):
            return self._names.held(registration.name)
        outcome = self._group.submit(registration)
        if isinstance(outcome, NameTaken):
            raise outcome
        return outcome

    def register_many(self, registrations: Sequence[Registration]) -> list[Outcome]:
        """Register many actors, one transaction per 64; an outcome per registration
        (a `NameTaken` for a name another node holds, not raised)."""
        self._check_observer()
        chunks = [registrations[i : i + _BATCH] for i in range(0, len(registrations), _BATCH)]
        if len(chunks) <= 1:
            return [o for chunk in chunks for o in self._commit(chunk)]
        # A few transactions in flight at once: etcd commits them in one disk
        # sync where one at a time would wait for a sync each.
        with ThreadPoolExecutor(_IN_FLIGHT, thread_name_prefix="taskmesh-register") as pool:
            return [o for outcomes in pool.map(self._commit, chunks) for o in outcomes]

    def _already(self, reg: Registration) -> bool:
        """Registered just so by this node under its valid lease (`register_many`
        ran first): nothing to write. Re-claims keep these records true after
        a new lease; a name lost to another node leaves them."""
        if self._keeper.lease_id is None:
            return False
        if reg.unique and self._names.held(reg.name) != self._names.record(reg.name, reg.address):
            return False
        published = self._routing.published(reg.name)
        if not reg.capabilities:
            return reg.unique and published is None
        return published == (frozenset(reg.capabilities), reg.address)

    def unregister_many(self, names: Sequence[str]) -> None:
        """Withdraw many actors' names and routes, one transaction per chunk;
        a name that is no longer exactly ours is left alone."""
        self.withdraw(self.withdrawal(names))

    def withdrawal(self, names: Sequence[str]) -> list[Withdrawal]:
        """Forget ``names`` here (no etcd call: any thread, the event loop
        too) and return the etcd operations that withdraw them, for
        :meth:`withdraw` (which may be tried again with the same list)."""
        ops: list[Withdrawal] = []
        for name in names:
            record = self._names.held(name)
            self._names.forget(name)
            published = self._routing.published(name)
            self._routing.forget(name)
            if record is not None:
                key = self._keys.name(name)
                ops.append((Compare(key, "value", "==", record.to_bytes()), Delete(key)))
            for cap in published[0] if published else ():
                ops.append((None, Delete(self._keys.route(cap, self._names.node, name))))
        return ops

    def withdraw(self, ops: Sequence[Withdrawal]) -> None:
        """Apply what :meth:`withdrawal` returned, one transaction per chunk;
        raises a ClusterError while etcd does not answer."""
        for start in range(0, len(ops), _MAX_OPS):
            chunk = ops[start : start + _MAX_OPS]
            guards = [c for c, _ in chunk if c is not None]
            if self._client.txn(guards, [d for _, d in chunk]).succeeded:
                continue
            for guard, delete in chunk:  # one was no longer ours: go one by one
                if guard is None:
                    self._client.delete(delete.key)
                else:
                    self._client.txn([guard], [delete])

    def _check_observer(self) -> None:
        if self._observer:
            raise LeaseLost("a client (observer) holds no lease and cannot register actors")

    # --- committing (a submitting thread) -----------------------------------

    def _commit(self, batch: Sequence[Registration]) -> list[Outcome]:
        with self._lock:
            for reg in batch:
                self._orphans.pop(reg.name, None)
        deadline = time.monotonic() + self.claim_timeout
        while True:
            left = deadline - time.monotonic()
            try:
                lease = self._keeper.wait_acquired(max(left, 0.0))
                return self._attempt(batch, lease)
            except ClusterError as exc:
                if not _retryable(exc):
                    raise
                if time.monotonic() < deadline:
                    _log.debug("registration waits for etcd: %s", exc)
                    time.sleep(0.05)
                    continue
                self._abandon(batch)
                what = batch[0].name if len(batch) == 1 else f"{len(batch)} actors"
                raise EtcdUnavailable(
                    f"could not register {what}: no etcd lease within "
                    f"{self.claim_timeout:g}s (etcd unreachable); nothing was registered"
                ) from None

    def _attempt(self, batch: Sequence[Registration], lease: int) -> list[Outcome]:
        """One transaction per chunk creates every absent name of it and puts every
        route; names that exist go the one-by-one way (ours, or another node's)."""
        outcomes: dict[int, Outcome] = {}
        for chunk in _chunks(batch):
            one_by_one = self._try_together(batch, chunk, lease, outcomes)
            for i in one_by_one:
                outcomes[i] = self._one(batch[i], lease)
        return [outcomes[i] for i in range(len(batch))]

    def _try_together(
        self,
        batch: Sequence[Registration],
        chunk: list[int],
        lease: int,
        outcomes: dict[int, Outcome],
    ) -> list[int]:
        seen: set[str] = set()
        together: list[int] = []
        later: list[int] = []
        for i in chunk:  # etcd refuses a key twice in one transaction
            (later if batch[i].name in seen else together).append(i)
            seen.add(batch[i].name)
        for _ in range(3):
            if not together:
                break
            unique = [i for i in together if batch[i].unique]
            records = [self._names.record(batch[i].name, batch[i].address) for i in unique]
            keys = [self._keys.name(r.name) for r in records]
            items = [_item(batch[i]) for i in together]
            result = self._client.txn(
                [Compare(key, "create", "==", 0) for key in keys],
                [
                    *(Put(k, r.to_bytes(), lease) for k, r in zip(keys, records, strict=True)),
                    *self._routing.puts_for(items, lease),
                ],
                [Get(key) for key in keys],
            )
            if result.succeeded:
                for record in records:
                    self._names.remember(record)
                self._routing.note_published(items)
                held = dict(zip(unique, records, strict=True))
                for i in together:
                    outcomes[i] = held.get(i)
                return later
            exists = {i for i, got in zip(unique, result.gets, strict=True) if got}
            later += sorted(exists)
            together = [i for i in together if i not in exists]
        return later + together

    def _one(self, reg: Registration, lease: int) -> Outcome:
        """A name that exists: ours already (moved to this lease), or another node's."""
        if reg.unique:
            record, created = self._names.get_or_create_under(reg.name, reg.address, lease)
            if not created:
                return NameTaken(f"name {reg.name!r} is held by node {record.node!r}")
        else:
            record = None
        self._routing.publish_batch([_item(reg)], lease)
        return record

    # --- leftovers of failed registrations ------------------------------------

    def _abandon(self, batch: Sequence[Registration]) -> None:
        """Forget a failed batch here, and withdraw it from etcd once etcd answers."""
        with self._lock:
            for reg in batch:
                self._names.forget(reg.name)
                self._routing.forget(reg.name)
                self._orphans[reg.name] = reg

    def _withdraw_orphans_quietly(self, lease: int) -> None:
        if self._orphans:
            try:
                self._withdraw_orphans(lease)
            except ClusterError as exc:
                _log.debug("withdrawing failed registrations: %s", exc)

    def _withdraw_orphans(self, lease: int) -> None:
        """Lease thread: delete what a failed registration may have written."""
        with self._lock:
            orphans = list(self._orphans.values())
        for reg in orphans:
            if reg.unique:
                self._names.withdraw(self._names.record(reg.name, reg.address))
            for cap in reg.capabilities:
                self._client.delete(self._keys.route(cap, self._names.node, reg.name))
            with self._lock:
                if self._orphans.get(reg.name) is reg:
                    del self._orphans[reg.name]
            _log.info("withdrew the failed registration of %r", reg.name)


def _item(reg: Registration) -> tuple[str, Sequence[str], str]:
    return (reg.name, reg.capabilities, reg.address)


def _chunks(batch: Sequence[Registration]) -> list[list[int]]:
    """Indexes of ``batch`` in groups that fit one etcd transaction (128 operations
    per branch, etcd's default ``--max-txn-ops``)."""
    chunks: list[list[int]] = [[]]
    puts = 0
    for i, reg in enumerate(batch):
        cost = int(reg.unique) + len(reg.capabilities)
        if chunks[-1] and puts + cost > _MAX_OPS:
            chunks.append([])
            puts = 0
        chunks[-1].append(i)
        puts += cost
    return [c for c in chunks if c]


def _retryable(exc: ClusterError) -> bool:
    """etcd away, or our lease gone under a transaction: wait for the next lease."""
    return isinstance(exc, EtcdUnavailable | LeaseLost) or "lease not found" in str(exc)
