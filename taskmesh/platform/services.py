"""The platform's part of a node: its limiter, scheduler and workflow coordinator.

`NodeServices` is started by ``Node.start`` once the node is registered,
and stopped by ``Node.stop`` before the node leaves the cluster (so its
workflows' claims go with its lease and other nodes adopt them at once).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from taskmesh.actors.ref import ActorRef
from taskmesh.addressing import Located
from taskmesh.cluster.etcd import KeyValue, PrefixWatch, WatchEvent
from taskmesh.errors import ConfigError

from .canvas import Step
from .coordinator import Adopt, Coordinator, CoordinatorContext, Drop, Rescan
from .gate import CapabilityGate
from .limiter import Limiter
from .limits import Limit, LimitInfo
from .records import PlatformKeys
from .scheduler import Scheduler
from .schedules import Schedule, ScheduleInfo, ScheduleStore
from .triggers import tick_id
from .workflow_store import WorkflowStore

if TYPE_CHECKING:
    from taskmesh.node import Node

__all__ = ["COORDINATOR", "NodeServices"]

log = logging.getLogger("taskmesh.platform")

COORDINATOR = "_workflows"
"""The coordinator's name on every node (``_`` names are node-local)."""


class NodeServices:
    """Schedules and workflows for one running node (see the module docstring)."""

    def __init__(self, node: Node, *, keep_results: float = 86400.0) -> None:
        member, locator = node.member, node.locator
        if member is None or locator is None:
            raise ConfigError("the platform services need a started node")
        self._node = node
        self._member = member
        self._locator = locator
        self.keys = PlatformKeys(node.cluster_name)
        self.schedules = ScheduleStore(member.client, self.keys)
        self.workflows = WorkflowStore(member.client, self.keys, keep=keep_results)
        self.limiter = Limiter(
            client=member.client,
            keys=self.keys,
            holder=node.node_id,
            lease=member.lease,
            own_lease=False,
            dead_letters=node.dead_letters,
            send_timeout=node.system.send_timeout,
            ask_timeout=node.ask_timeout,
            gates=locator.limits,
        )
        self.scheduler = Scheduler(
            client=member.client,
            keys=self.keys,
            deliver=self._deliver,
            dead_letters=node.dead_letters,
        )
        self._coordinator: ActorRef | None = None
        self._claims = PrefixWatch(
            member.client,
            self.keys.claims,
            on_reset=self._claims_reset,
            on_event=self._claims_event,
            name="workflow-claims",
        )

    def start(self) -> NodeServices:
        """Read the limits, spawn the coordinator, watch claims, start the
        scheduler (the caller's thread, from ``Node.start``)."""
        member = self._member
        self.limiter.start(wait=member.settings.start_timeout)
        context = CoordinatorContext(
            node=self._node.node_id,
            store=self.workflows,
            lease=member.lease.require,
            locate=self._locate,
            reachable=self._locator.reachable,
            gate=self._gate,
        )
        self._coordinator = self._node.system.spawn(
            Coordinator, context, name=COORDINATOR, mailbox_size=100_000
        )
        member.lease.on_acquired(lambda lease: self._tell(Rescan()))
        member.lease.on_lost(lambda lease: self._tell(Drop()))
        self._claims.start(wait=member.settings.start_timeout)
        self.scheduler.start(timeout=member.settings.start_timeout)
        member.on_leadership(self.scheduler.elected, self.scheduler.demoted)
        fence = member.election.fence
        if fence is not None:  # elected before we subscribed
            self.scheduler.elected(fence)
        return self

    def stop(self) -> None:
        """Stop firing schedules and coordinating workflows (idempotent)."""
        self.scheduler.demoted()
        self.scheduler.stop()
        self._claims.stop()
        coordinator, self._coordinator = self._coordinator, None
        if coordinator is not None:
            coordinator.stop(timeout=5.0)

    def close(self) -> None:
        """Stop the limiter, once the node's actors have stopped (they obey
        the limits while they drain)."""
        self.limiter.stop()

    # --- schedules (caller's thread) ----------------------------------------

    def schedule(self, name: str, **options: Any) -> Schedule:
        return self.schedules.put(Schedule(name=name, **options))

    def unschedule(self, name: str) -> bool:
        return self.schedules.remove(name)

    def list_schedules(self) -> list[ScheduleInfo]:
        return self.schedules.infos()

    # --- limits (caller's thread) ---------------------------------------------

    def set_limit(self, capability: str, **options: Any) -> Limit:
        return self.limiter.store.put(Limit(capability=capability, **options))

    def remove_limit(self, capability: str) -> bool:
        return self.limiter.store.remove(capability)

    def list_limits(self) -> list[LimitInfo]:
        return self.limiter.store.infos()

    # --- hooks ----------------------------------------------------------------

    def _gate(self, capability: str) -> CapabilityGate | None:
        """The coordinator's thread: the gate of a limited capability."""
        return self.limiter.gates.get(capability)

    def _tell(self, message: Any) -> None:
        coordinator = self._coordinator
        if coordinator is not None:
            coordinator.tell(message)

    def _claims_reset(self, kvs: list[KeyValue], revision: int) -> None:
        """Watch thread: the claims were re-listed; adopt what nobody holds."""
        self._tell(Rescan())

    def _claims_event(self, event: WatchEvent) -> None:
        """Watch thread: a claim vanished (its node's lease expired, or the
        workflow ended): try to adopt the workflow."""
        if event.kind == "delete":
            self._tell(Adopt(PlatformKeys.tail(self.keys.claims, event.kv.key)))

    def _deliver(self, schedule: Schedule, due: float) -> Any:
        """A scheduler pool thread: one tick, effect-once under its key."""
        key = f"{schedule.name}:{tick_id(due)}"
        payload = schedule.payload(due)
        if schedule.capability:
            # consistent_hash on the key: a repeat of the tick reaches the same holder
            target = self._node.capability(schedule.to, strategy="consistent_hash")
            return target.ask(
                payload, timeout=schedule.timeout, retries=schedule.retries, idempotency_key=key
            )
        return self._node.ref(schedule.to).ask(
            payload, timeout=schedule.timeout, retries=schedule.retries, idempotency_key=key
        )

    def _locate(self, step: Step, lost: frozenset[str], key: str) -> Located | None:
        """The coordinator's thread: where to ask ``step`` now."""
        locator = self._locator
        if step.capability:
            targets = locator.route(step.target, "consistent_hash", key, lost)
            return targets[0] if targets else None
        located = locator.resolve(step.target)
        if located is None or (located[0] in lost and not locator.reachable(located[0])):
            return None
        return located
