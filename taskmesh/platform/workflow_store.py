"""A workflow's state in etcd, so that it outlives the node coordinating it.

A running workflow is its definition (``workflows/<id>``), a small status
record (``workflow-status/<id>``), one record per finished step
(``workflow-steps/<id>/<n>``) and a **claim** (``workflow-claims/<id>``)
naming the coordinating node, under that node's lease. None of the others
has a lease: when the node dies, its claim expires with its lease and
another node's coordinator claims the workflow and carries on from the
recorded steps.

Every write of a coordinator is guarded by its claim's create revision, so
a coordinator that lost its claim (its lease expired during a pause) can no
longer record anything for that workflow. When a workflow ends, its status
record keeps the outcome for ``keep`` seconds (under a shared retention
lease) and everything else is deleted.

Methods run on the coordinator's thread (or a client's, for reads).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from taskmesh.cluster.etcd import Compare, Delete, EtcdClient, Get, KeyValue, Put
from taskmesh.errors import ClusterError

from .progress import StepResult
from .records import PlatformKeys, decode, encode

__all__ = ["Claimed", "WorkflowStore"]

_LEASE_REUSE = 3600.0
"""Seconds during which finished workflows share one retention lease."""


@dataclass(frozen=True, slots=True)
class Claimed:
    """A workflow this node coordinates: its definition, status record,
    recorded step results, and the claim revision that guards writes."""

    workflow_id: str
    definition: dict[str, Any]
    status: dict[str, Any]
    results: dict[int, StepResult]
    claim: int


class WorkflowStore:
    """Reads and guarded writes of workflow state (see the module docstring)."""

    def __init__(self, client: EtcdClient, keys: PlatformKeys, *, keep: float = 86400.0) -> None:
        self._client = client
        self._keys = keys
        self.keep = keep
        self._retention: tuple[int, float] | None = None

    # --- creating and claiming ------------------------------------------------

    def create(
        self, workflow_id: str, definition: dict[str, Any], steps: int, node: str, lease: int
    ) -> Claimed | None:
        """Store a new workflow claimed by ``node``; None if the id exists."""
        status = {"status": "running", "created": time.time(), "steps": steps, "done": 0}
        definition_raw = encode(definition, what=f"workflow {workflow_id}'s definition")
        claim_key = self._keys.claim(workflow_id)
        result = self._client.txn(
            [Compare(self._keys.status(workflow_id), "create", "==", 0)],
            [
                Put(self._keys.workflow(workflow_id), definition_raw),
                Put(self._keys.status(workflow_id), encode(status)),
                Put(claim_key, node.encode(), lease),
            ],
        )
        if not result.succeeded:
            return None
        return Claimed(workflow_id, definition, status, {}, result.revision)

    def claim(self, workflow_id: str, node: str, lease: int) -> Claimed | None:
        """Take over a running workflow nobody coordinates (or that this node
        already claims under ``lease``); None if it is not ours to run."""
        status_key, claim_key = self._keys.status(workflow_id), self._keys.claim(workflow_id)
        result = self._client.txn([], [Get(status_key), Get(claim_key)])
        status_kvs, claim_kvs = result.gets
        if not status_kvs or decode(status_kvs[0].value).get("status") != "running":
            return None
        if claim_kvs:
            held = claim_kvs[0]
            if held.value.decode() != node or held.lease != lease:
                return None
            revision = held.create_revision
        else:
            taken = self._client.txn(
                [
                    Compare(claim_key, "create", "==", 0),
                    Compare(status_key, "mod", "==", status_kvs[0].mod_revision),
                ],
                [Put(claim_key, node.encode(), lease)],
            )
            if not taken.succeeded:
                return None
            revision = taken.revision
        definition = self._client.get(self._keys.workflow(workflow_id))
        if definition is None:
            return None
        steps, _ = self._client.get_prefix(self._keys.steps(workflow_id))
        results = {}
        prefix = self._keys.steps(workflow_id)
        for kv in steps:
            tail = PlatformKeys.tail(prefix, kv.key)
            if tail.isdigit():
                results[int(tail)] = StepResult.from_record(decode(kv.value))
        return Claimed(
            workflow_id, decode(definition.value), decode(status_kvs[0].value), results, revision
        )

    def unclaimed(self) -> list[str]:
        """Running workflows that no node claims, oldest first."""
        statuses, _ = self._client.get_prefix(self._keys.statuses)
        claims, _ = self._client.get_prefix(self._keys.claims)
        claimed = {PlatformKeys.tail(self._keys.claims, kv.key) for kv in claims}
        running = [
            (decode(kv.value).get("created", 0.0), PlatformKeys.tail(self._keys.statuses, kv.key))
            for kv in statuses
            if decode(kv.value).get("status") == "running"
        ]
        return [wid for _, wid in sorted(running) if wid not in claimed]

    def claimed_by(self, node: str) -> list[str]:
        """Workflows whose claim names ``node`` (after its coordinator restarted)."""
        claims, _ = self._client.get_prefix(self._keys.claims)
        return [
            PlatformKeys.tail(self._keys.claims, kv.key)
            for kv in claims
            if kv.value == node.encode()
        ]

    # --- guarded writes -------------------------------------------------------

    def record(
        self, claimed: Claimed, number: int, result: StepResult, status: dict[str, Any]
    ) -> bool:
        """Record step ``number``'s result and the updated status; False if
        the claim is gone (another node coordinates the workflow now).
        Raises `MessageTooLarge` for a result above `MAX_RECORD`."""
        wid = claimed.workflow_id
        raw = encode(result.to_record(), what=f"the result of step {number} of workflow {wid}")
        return self._client.txn(
            [Compare(self._keys.claim(wid), "create", "==", claimed.claim)],
            [Put(self._keys.step(wid, number), raw), Put(self._keys.status(wid), encode(status))],
        ).succeeded

    def finish(self, claimed: Claimed, status: dict[str, Any]) -> bool:
        """Store the outcome (kept ``keep`` s) and delete the rest; False if
        the claim is gone."""
        wid = claimed.workflow_id
        raw = encode(status, what=f"the outcome of workflow {wid}")
        for attempt in (1, 2):
            try:
                return self._client.txn(
                    [Compare(self._keys.claim(wid), "create", "==", claimed.claim)],
                    [
                        Put(self._keys.status(wid), raw, self._retention_lease(fresh=attempt > 1)),
                        Delete(self._keys.workflow(wid)),
                        Delete(self._keys.steps(wid), prefix=True),
                        Delete(self._keys.claim(wid)),
                    ],
                ).succeeded
            except ClusterError as error:
                if attempt > 1 or "lease not found" not in str(error):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _retention_lease(self, *, fresh: bool) -> int:
        now = time.monotonic()
        if fresh or self._retention is None or now - self._retention[1] > _LEASE_REUSE:
            ttl = round(self.keep + _LEASE_REUSE)
            self._retention = (self._client.grant(ttl), now)
        return self._retention[0]

    # --- reads (any thread) -------------------------------------------------

    def status(self, workflow_id: str) -> KeyValue | None:
        return self._client.get(self._keys.status(workflow_id))

    def statuses(self) -> dict[str, dict[str, Any]]:
        """Every known workflow's status record by id (running and kept)."""
        kvs, _ = self._client.get_prefix(self._keys.statuses)
        claims = {
            PlatformKeys.tail(self._keys.claims, kv.key): kv.value.decode()
            for kv in self._client.get_prefix(self._keys.claims)[0]
        }
        found = {}
        for kv in kvs:
            wid = PlatformKeys.tail(self._keys.statuses, kv.key)
            found[wid] = {**decode(kv.value), "node": claims.get(wid)}
        return found
