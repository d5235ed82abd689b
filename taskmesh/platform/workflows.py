"""The caller's side of workflows: submit one, wait for it, fetch its outcome.

``client.run(workflow, timeout=...)`` gives the definition to a
coordinator in the cluster (any node's, by the ``taskmesh.workflows``
capability, with retries and an idempotency key made from the workflow's
id) and waits for the outcome. The caller only waits: it may die, and
``client.result(workflow_id)`` fetches the outcome later, from any process.
Waiting watches the workflow's status record in etcd; nothing polls.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from taskmesh.actors.names import validate_name
from taskmesh.addressing import CapabilityRef, Resolver
from taskmesh.cluster.etcd import EtcdClient, KeyValue, PrefixWatch, WatchEvent
from taskmesh.errors import (
    ConfigError,
    WorkflowError,
    WorkflowFailed,
    WorkflowNotFound,
    WorkflowTimeout,
)

from .canvas import Chain, Chord, Group, Step, Workflow, to_record
from .coordinator import CAPABILITY
from .progress import Progress
from .records import PlatformKeys, decode, encode
from .workflow_store import WorkflowStore

__all__ = ["WorkflowInfo", "WorkflowService", "workflow_infos"]

_SUBMIT_RETRIES = 3


@dataclass(frozen=True, slots=True)
class WorkflowInfo:
    """One workflow as ``taskmesh workflows`` lists it. ``node`` is the
    coordinating node of a running one; times are seconds since the epoch."""

    workflow_id: str
    status: str
    steps: int
    done: int
    created: float
    finished: float | None
    node: str | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.workflow_id, "status": self.status, "steps": self.steps,
            "done": self.done, "created": self.created, "finished": self.finished,
            "node": self.node, "error": self.error,
        }  # fmt: skip


class WorkflowService:
    """Submits workflows to the coordinators ``resolver`` finds and reads outcomes from etcd
    (the caller's thread)."""

    def __init__(self, resolver: Resolver, client: EtcdClient, cluster: str) -> None:
        self._coordinators = CapabilityRef(resolver, CAPABILITY)
        self._client = client
        self._keys = PlatformKeys(cluster)
        self._store = WorkflowStore(client, self._keys)

    def submit(
        self, workflow: Workflow, *, workflow_id: str | None = None, timeout: float = 10.0
    ) -> str:
        """Start ``workflow`` in the cluster and return its id at once.

        Submitting the same ``workflow_id`` again starts nothing new.
        Raises `ConfigError` for a malformed workflow, `MessageTooLarge`
        for a definition above what etcd holds, `WorkflowError` when the
        coordinator cannot store it (etcd away), and the ask's errors when
        no coordinator answers.
        """
        if not isinstance(workflow, Step | Chain | Group | Chord):
            raise ConfigError(f"run a step, chain, group or chord, not {workflow!r:.100}")
        workflow_id = validate_name(workflow_id or uuid.uuid4().hex, what="workflow id")
        record = to_record(workflow)
        Progress.of(workflow)  # checks the size of the tree
        encode(record, what=f"workflow {workflow_id}'s definition")
        answer = self._coordinators.ask(
            {"op": "start", "id": workflow_id, "workflow": record},
            timeout=timeout, retries=_SUBMIT_RETRIES, idempotency_key=f"start:{workflow_id}",
        )  # fmt: skip
        if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
            kind, text = answer["error"].get("type"), answer["error"].get("message")
            refused = f"the coordinator refused workflow {workflow_id}: {kind}: {text}"
            raise (
                ConfigError(refused)
                if kind in ("ConfigError", "InvalidName")
                else WorkflowError(refused)
            )
        return workflow_id

    def run(
        self, workflow: Workflow, *, timeout: float = 60.0, workflow_id: str | None = None
    ) -> Any:
        """Submit ``workflow`` and wait up to ``timeout`` s for its result
        (handing it to a coordinator may take up to 10 s more).

        Raises `WorkflowFailed` if a step failed, `WorkflowTimeout` (with
        the id, for `result`) if it has not finished in time.
        """
        deadline = time.monotonic() + timeout
        # Handing the workflow over has its own bound: once it is accepted, the
        # caller gets an id to come back with, however short its timeout.
        workflow_id = self.submit(workflow, workflow_id=workflow_id, timeout=10.0)
        return self.result(workflow_id, timeout=max(deadline - time.monotonic(), 0.0))

    def result(self, workflow_id: str, *, timeout: float = 0.0) -> Any:
        """The result of a finished workflow, waiting up to ``timeout`` s
        for a running one.

        Raises `WorkflowFailed` if it failed, `WorkflowTimeout` if it still
        runs after ``timeout``, `WorkflowNotFound` for an unknown id.
        """
        validate_name(workflow_id, what="workflow id")
        key = self._keys.status(workflow_id)
        finished = threading.Event()
        box: list[dict[str, Any]] = []

        def seen(kv: KeyValue) -> None:
            if kv.key == key:
                record = decode(kv.value)
                box.append(record)
                if record.get("status") in ("succeeded", "failed"):
                    finished.set()

        held = self._client.get(key)
        if held is None:
            raise WorkflowNotFound(f"no workflow with id {workflow_id!r}")
        seen(held)

        def reset(kvs: list[KeyValue], revision: int) -> None:
            for kv in kvs:
                seen(kv)

        def event(change: WatchEvent) -> None:
            if change.kind == "put":
                seen(change.kv)

        if not finished.is_set() and timeout > 0:
            watch = PrefixWatch(
                self._client, key, on_reset=reset, on_event=event, name=f"workflow:{workflow_id}"
            )
            try:
                watch.start()  # it lists the key first: no change is missed
                finished.wait(timeout)
            finally:
                watch.stop()
        if not finished.is_set():
            raise WorkflowTimeout(workflow_id, timeout)
        return _outcome(workflow_id, box[-1])

    def list(self) -> list[WorkflowInfo]:
        """Running workflows and recently finished ones, newest first."""
        return workflow_infos(self._store)


def workflow_infos(store: WorkflowStore) -> list[WorkflowInfo]:
    """Running workflows and recently finished ones, newest first."""
    infos = [
        WorkflowInfo(
            workflow_id=wid,
            status=str(record.get("status", "?")),
            steps=int(record.get("steps", 0)),
            done=int(record.get("done", 0)),
            created=float(record.get("created", 0.0)),
            finished=record.get("finished"),
            node=record.get("node"),
            error=_error_text(record.get("error")),
        )
        for wid, record in store.statuses().items()
    ]
    return sorted(infos, key=lambda info: info.created, reverse=True)


def _error_text(error: Any) -> str | None:
    if not isinstance(error, dict):
        return None
    return f"{error.get('type', 'Error')}: {error.get('message', '')}"


def _outcome(workflow_id: str, record: dict[str, Any]) -> Any:
    if record.get("status") == "succeeded":
        return record.get("result")
    error = record.get("error") or {}
    raise WorkflowFailed(
        workflow_id,
        str(error.get("type", "Error")),
        str(error.get("message", "")),
        traceback=str(error.get("traceback") or ""),
        step=error.get("step"),
        target=error.get("target"),
        handler=record.get("handler"),
    )
