"""Where the platform's state lives in etcd, and how its records are encoded.

Under the cluster's root (``/taskmesh/<cluster>/``, see
:mod:`taskmesh.cluster.keys`)::

    schedules/<name>                 the schedule's definition, no lease
    schedule-state/<name>            its last tick and how it went, no lease
    workflows/<id>                   a running workflow's definition, no lease
    workflow-status/<id>             running, succeeded or failed (+ result);
                                     finished ones under a retention lease
    workflow-steps/<id>/<index>      one step's result or error, no lease
    workflow-claims/<id>             the coordinating node, under its lease
    limits/<capability>              a cluster-wide limit's definition, no lease
    limit-buckets/<capability>       its rate's token bucket, no lease
    limit-slots/<capability>/<gate>/ its concurrency slots: ``v`` (a version,
                                     no lease), ``h/<holder>`` (slots held)
                                     and ``w/<holder>`` (waiting), under the
                                     holder's lease

Records are msgpack maps (messages and results are msgpack values, bytes
included), so JSON cannot hold them. etcd refuses a request above
``--max-request-bytes`` (1.5 MiB by default): no record may exceed
`MAX_RECORD`, and a larger one is refused with a clear error.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import msgpack

from taskmesh.cluster.keys import ClusterKeys
from taskmesh.errors import InvalidMessage, MessageTooLarge

__all__ = ["MAX_RECORD", "PlatformKeys", "decode", "encode", "gate_id"]

MAX_RECORD = 1024 * 1024
"""Bytes one record may take: below etcd's default request limit of 1.5 MiB,
with room for the keys and the other operations of the same transaction."""


def encode(record: dict[str, Any], *, what: str = "record") -> bytes:
    """``record`` as stored; raises `InvalidMessage` for a value msgpack
    cannot encode and `MessageTooLarge` above `MAX_RECORD`."""
    try:
        raw: bytes = msgpack.packb(record, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as error:
        raise InvalidMessage(f"{what} is not a msgpack value: {error}") from None
    if len(raw) > MAX_RECORD:
        raise MessageTooLarge(
            f"{what} takes {len(raw):,} bytes encoded, above the {MAX_RECORD:,} bytes one "
            "etcd record may hold: store the data elsewhere and pass a reference (a path, a key)"
        )
    return raw


def decode(raw: bytes) -> dict[str, Any]:
    """A record read from etcd; an unreadable one decodes to ``{}``."""
    try:
        value = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException):
        return {}
    return value if isinstance(value, dict) else {}


def gate_id(key: str | None) -> str:
    """A concurrency gate's part of its etcd keys: ``_`` for the capability's
    own gate, ``=<key, percent-quoted>`` for one key of a per-key limit."""
    return "_" if key is None else "=" + quote(key, safe="")


class PlatformKeys:
    """Key names of the platform's records for one cluster."""

    def __init__(self, cluster: str) -> None:
        self.cluster = ClusterKeys(cluster)
        root = self.cluster.root
        self.schedules = root + "schedules/"
        self.schedule_states = root + "schedule-state/"
        self.workflows = root + "workflows/"
        self.statuses = root + "workflow-status/"
        self.steps_root = root + "workflow-steps/"
        self.claims = root + "workflow-claims/"
        self.limits = root + "limits/"
        self.buckets = root + "limit-buckets/"
        self.slots = root + "limit-slots/"

    def schedule(self, name: str) -> str:
        return self.schedules + name

    def schedule_state(self, name: str) -> str:
        return self.schedule_states + name

    def workflow(self, workflow_id: str) -> str:
        return self.workflows + workflow_id

    def status(self, workflow_id: str) -> str:
        return self.statuses + workflow_id

    def steps(self, workflow_id: str) -> str:
        """The prefix of one workflow's step results (ends with ``/``)."""
        return f"{self.steps_root}{workflow_id}/"

    def step(self, workflow_id: str, index: int) -> str:
        return f"{self.steps_root}{workflow_id}/{index}"

    def claim(self, workflow_id: str) -> str:
        return self.claims + workflow_id

    def limit(self, capability: str) -> str:
        return self.limits + capability

    def bucket(self, capability: str) -> str:
        return self.buckets + capability

    def slot_gate(self, capability: str, key: str | None) -> str:
        """The prefix of one concurrency gate's keys (ends with ``/``): the
        capability's own (``_``), or one ``key=`` of a per-key limit."""
        return f"{self.slots}{capability}/{gate_id(key)}/"

    @staticmethod
    def tail(prefix: str, key: str) -> str:
        """The part of ``key`` after ``prefix``."""
        return key[len(prefix) :]
