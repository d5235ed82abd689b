"""The workflow coordinator: a built-in actor on every node.

Each node runs one (``_workflows``, a node-local name; capability
``taskmesh.workflows``). ``client.run`` asks any of them to start a
workflow; from then on that coordinator drives it:

- a step is an ``ask_async`` with the key ``<workflow>:<step number>``; its
  answer comes back as a message to the coordinator (``Reply`` callback ->
  ``tell``), so one actor drives many workflows with no thread per step;
- each result is written to etcd (guarded by the coordinator's claim)
  before the workflow moves on; the next steps are computed from the
  recorded results (`Progress`), so a chord's body starts in the very
  message that records the header's last result;
- a lost node (its connection broke, it is suspected, or it left) makes
  the step go to another holder after a backoff, with the same key, within
  the step's ``timeout`` and ``retries``;
- capability steps are routed by ``consistent_hash`` on their key, so a
  repeat (after a retry or an adoption) reaches the same holder, whose
  idempotency memory answers it without running it again, while that
  holder lives;
- a step to a limited capability (``node.set_limit``) waits for its leave
  (a token, a slot) as a message too: the limiter tells the coordinator
  when it comes. The slot is held until the step is settled, across its
  retries.

When a coordinating node dies, its claims expire with its lease; every
other node's coordinator hears of it (a watch on the claims) and one of
them claims the workflow, reads its recorded steps and carries on: steps
already recorded are not run again, steps in flight are asked again under
the same keys.

Everything here runs on the coordinator's own thread, except the reply
callbacks (the replier's thread: they only ``tell``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from taskmesh.actors.actor import Actor
from taskmesh.actors.future import Reply
from taskmesh.actors.names import validate_name
from taskmesh.addressing import Located
from taskmesh.errors import (
    ActorNotFound,
    AskTimeout,
    ClusterError,
    ConfigError,
    InvalidMessage,
    LeaseLost,
    LimitTimeout,
    MessageTooLarge,
    PeerUnreachable,
    TaskmeshError,
)

from .admission import Grant
from .attempts import RETRYABLE, StepAttempt, backoff, error_record, timed_out
from .canvas import Step, compose, from_record
from .gate import CapabilityGate
from .progress import Progress, StepResult
from .workflow_store import Claimed, WorkflowStore

__all__ = ["CAPABILITY", "Coordinator", "CoordinatorContext"]

log = logging.getLogger("taskmesh.workflows")

CAPABILITY = "taskmesh.workflows"

_SWEEP = 0.1
"""Seconds between checks that the nodes asked are still reachable (as a
sync ask with retries does), and that no step is past its deadline."""
_READOPT = 1.0


@dataclass(frozen=True)
class CoordinatorContext:
    """What a coordinator needs from its node (its functions run on the
    coordinator's thread)."""

    node: str
    store: WorkflowStore
    lease: Callable[[], int]
    """The node's current lease id; raises `LeaseLost` without one."""
    locate: Callable[[Step, frozenset[str], str], Located | None]
    """Where to ask ``step`` now, avoiding the lost nodes, for its key."""
    reachable: Callable[[str], bool]
    gate: Callable[[str], CapabilityGate | None] = lambda capability: None
    """The gate of a limited capability, or None."""


# --- messages to itself (local only: they cannot come from the network) ----


@dataclass(frozen=True, slots=True)
class _Answer:
    workflow: str
    number: int
    attempt: int
    reply: Reply


@dataclass(frozen=True, slots=True)
class _Admitted:
    workflow: str
    number: int
    grant: Grant | None


@dataclass(frozen=True, slots=True)
class _Retry:
    workflow: str
    number: int
    attempt: int


@dataclass(frozen=True, slots=True)
class Adopt:
    workflow: str


class _Sweep:
    pass


class Rescan:
    pass


class Drop:
    """The node's lease was lost: its claims are gone."""


@dataclass(eq=False)
class _Run:
    claimed: Claimed
    progress: Progress
    results: dict[int, StepResult]
    status: dict[str, Any]
    steps: dict[int, StepAttempt] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.claimed.workflow_id


class Coordinator(Actor):
    """Drives workflows (see the module docstring)."""

    capabilities = (CAPABILITY,)

    def __init__(self, context: CoordinatorContext) -> None:
        self.ctx = context
        self.runs: dict[str, _Run] = {}

    def on_start(self) -> None:
        self.ref.tell(Rescan())

    # --- messages -------------------------------------------------------------

    def receive(self, message: Any) -> Any:
        if isinstance(message, _Answer):
            self._guarded(message.workflow, lambda: self._answer(message))
        elif isinstance(message, _Admitted):
            self._guarded(message.workflow, lambda: self._admitted(message))
        elif isinstance(message, _Retry):
            self._guarded(message.workflow, lambda: self._retry(message))
        elif isinstance(message, _Sweep):
            self._sweep()
        elif isinstance(message, Adopt):
            self._guarded(message.workflow, lambda: self._adopt(message.workflow))
        elif isinstance(message, Rescan):
            self._rescan()
        elif isinstance(message, Drop):
            self._drop_all()
        elif isinstance(message, dict) and message.get("op") == "start":
            try:
                return self._start(message)
            except TaskmeshError as error:  # an answer, not a failure of the coordinator
                return {"error": error_record(error)}
        else:
            self.system.dead_letters.record(
                self.name, message, "unhandled", "not a message for the workflow coordinator"
            )
        return None

    def adopt(self, workflow_id: str) -> None:
        """Try to take over ``workflow_id`` (any thread: a tell)."""
        self.ref.tell(Adopt(workflow_id))

    def _guarded(self, workflow: str, handle: Callable[[], None]) -> None:
        """Run ``handle``; if etcd fails meanwhile, let go of the workflow
        here and claim it again shortly (its recorded steps are safe)."""
        try:
            handle()
        except ClusterError as error:
            log.warning(
                "workflow %s: etcd failed (%s); resuming it in %g s", workflow, error, _READOPT
            )
            self._forget(workflow)
            self.timers.start_single(("adopt", workflow), Adopt(workflow), _READOPT)

    # --- starting and adopting ------------------------------------------------

    def _start(self, message: dict[str, Any]) -> dict[str, Any]:
        workflow_id = validate_name(str(message.get("id")), what="workflow id")
        definition = message.get("workflow")
        progress = Progress.of(from_record(definition))
        assert isinstance(definition, dict)
        claimed = self.ctx.store.create(
            workflow_id, definition, len(progress.steps), self.ctx.node, self.ctx.lease()
        )
        if claimed is None:  # a repeat, or a retry that reached another node
            if workflow_id not in self.runs:
                self._adopt(workflow_id)
            return {"id": workflow_id}
        log.info("workflow %s started (%d steps)", workflow_id, len(progress.steps))
        run = _Run(claimed, progress, {}, dict(claimed.status))
        self.runs[workflow_id] = run
        self._guarded(workflow_id, lambda: self._advance(run))
        return {"id": workflow_id}

    def _adopt(self, workflow_id: str) -> None:
        if workflow_id in self.runs:
            return
        try:
            lease = self.ctx.lease()
        except LeaseLost:
            return  # claimed again with the next lease (Rescan)
        claimed = self.ctx.store.claim(workflow_id, self.ctx.node, lease)
        if claimed is None:
            return
        try:
            progress = Progress.of(from_record(claimed.definition))
        except ConfigError as error:
            run = _Run(claimed, Progress.of(Step("_invalid")), {}, dict(claimed.status))
            self._finish(run, error=error_record(error))
            return
        log.info(
            "workflow %s adopted here with %d of %d steps done",
            workflow_id, len(claimed.results), len(progress.steps),
        )  # fmt: skip
        run = _Run(claimed, progress, dict(claimed.results), dict(claimed.status))
        self.runs[workflow_id] = run
        self._advance(run)

    def _rescan(self) -> None:
        """Claim every running workflow nobody coordinates (at start, and
        when the node has a new lease)."""
        try:
            orphans = self.ctx.store.unclaimed() + self.ctx.store.claimed_by(self.ctx.node)
        except ClusterError as error:
            log.info("workflows: rescan failed (%s); trying again", error)
            self.timers.start_single("rescan", Rescan(), _READOPT)
            return
        for workflow_id in orphans:
            self._guarded(workflow_id, functools.partial(self._adopt, workflow_id))

    def _drop_all(self) -> None:
        for workflow_id in list(self.runs):
            self._forget(workflow_id)

    def _forget(self, workflow_id: str) -> None:
        run = self.runs.pop(workflow_id, None)
        if run is not None:
            for number, state in run.steps.items():
                self.timers.cancel(("retry", workflow_id, number))
                _release(state)

    # --- driving --------------------------------------------------------------

    def _advance(self, run: _Run) -> None:
        """Start what can run; finish the workflow when it is done."""
        outcome = run.progress.evaluate(run.results)
        if outcome.done:
            self._finish(run, result=outcome.value)
        elif outcome.failed is not None:
            failed = outcome.failed
            handler = run.progress.handler_for(failed)
            error = run.results[failed].error or {}
            if handler is None or handler in run.results:
                self._finish(run, error=error, handler=handler)
            elif handler not in run.steps:
                notice = {"workflow": run.id, "failed": run.progress.steps[failed].target,
                          "error": {k: error.get(k) for k in ("type", "message")}}  # fmt: skip
                self._launch(run, handler, compose(run.progress.steps[handler].message, notice))
        else:
            for number, message in outcome.ready:
                if number not in run.steps:
                    self._launch(run, number, message)

    def _launch(self, run: _Run, number: int, message: Any) -> None:
        step = run.progress.steps[number]
        run.steps[number] = StepAttempt(
            message, f"{run.id}:{number}", time.monotonic() + step.timeout
        )
        self._attempt(run, number)

    def _attempt(self, run: _Run, number: int) -> None:
        state = run.steps[number]
        step = run.progress.steps[number]
        if step.capability and state.grant is None and not self._admit(run, number, state, step):
            return
        state.attempt += 1
        state.node, state.reply = None, None
        remaining = state.deadline - time.monotonic()
        if remaining <= 0:
            self._settle(run, number, timed_out(step))
            return
        try:
            located = self.ctx.locate(step, frozenset(state.lost), state.key)
            if located is None:
                what = "holds the capability" if step.capability else "is named"
                raise ActorNotFound(f"no actor {what} {step.target!r} in the cluster")
            node, target = located
            reply = target.ask_async(state.message, timeout=remaining, idempotency_key=state.key)
        except RETRYABLE as error:
            self._retry_later(run, number, error)
            return
        except TaskmeshError as error:  # the message itself is refused
            self._settle(run, number, StepResult(False, error=error_record(error)))
            return
        state.node, state.reply = node, reply
        me, workflow_id, attempt = self.ref, run.id, state.attempt
        reply.add_done_callback(lambda done: me.tell(_Answer(workflow_id, number, attempt, done)))
        if not self.timers.is_active("sweep"):
            self.timers.start_periodic("sweep", _Sweep(), _SWEEP)

    def _admit(self, run: _Run, number: int, state: StepAttempt, step: Step) -> bool:
        """Take the step's leave from its capability's limit, if it has one;
        False while it waits (an `_Admitted` message follows) or failed."""
        if state.admitting:
            return False
        gate = self.ctx.gate(step.target)
        if gate is None:
            return True
        me, workflow_id = self.ref, run.id

        def came(grant: Grant | None) -> None:  # the limiter's thread
            me.tell(_Admitted(workflow_id, number, grant))

        try:
            grant = gate.admit(None, state.deadline, came)
        except ConfigError as error:  # a per-key limit: a step has no key
            self._settle(run, number, StepResult(False, error=error_record(error)))
            return False
        if grant is None:
            state.admitting = True
            return False
        state.grant = grant
        return True

    def _admitted(self, message: _Admitted) -> None:
        run = self.runs.get(message.workflow)
        state = run.steps.get(message.number) if run else None
        if run is None or state is None or message.number in run.results:
            if message.grant is not None:
                message.grant.release()
            return
        state.admitting = False
        if message.grant is None:
            step = run.progress.steps[message.number]
            error = LimitTimeout(
                f"step {step.target!r} got no token of its limit within {step.timeout:g} s"
            )
            self._settle(run, message.number, StepResult(False, error=error_record(error)))
            return
        state.grant = message.grant
        self._attempt(run, message.number)

    def _retry_later(self, run: _Run, number: int, error: TaskmeshError) -> None:
        state = run.steps[number]
        step = run.progress.steps[number]
        state.failures += 1
        state.reply = None
        pause = backoff(state.failures)
        if state.failures > step.retries or time.monotonic() + pause >= state.deadline:
            self._settle(run, number, StepResult(False, error=error_record(error)))
            return
        retry = _Retry(run.id, number, state.attempt)
        self.timers.start_single(("retry", run.id, number), retry, pause)

    def _retry(self, message: _Retry) -> None:
        run = self.runs.get(message.workflow)
        state = run.steps.get(message.number) if run else None
        if run is None or state is None or state.attempt != message.attempt:
            return
        if message.number not in run.results:
            self._attempt(run, message.number)

    def _answer(self, message: _Answer) -> None:
        run = self.runs.get(message.workflow)
        state = run.steps.get(message.number) if run else None
        if run is None or state is None or message.number in run.results:
            return
        current = message.attempt == state.attempt and state.reply is message.reply
        try:
            value = message.reply.get(0)
        except RETRYABLE as error:
            if current:
                if isinstance(error, PeerUnreachable) and state.node is not None:
                    state.lost.add(state.node)
                self._retry_later(run, message.number, error)
            return
        except AskTimeout:
            if current:
                self._settle(run, message.number, timed_out(run.progress.steps[message.number]))
            return
        except Exception as error:  # the actor raised: that is the step's answer
            self._settle(run, message.number, StepResult(False, error=error_record(error)))
            return
        self._settle(run, message.number, StepResult(True, value))

    def _sweep(self) -> None:
        """Give up on asks to nodes that are gone, and on overdue steps."""
        now = time.monotonic()
        waiting = False
        for run in list(self.runs.values()):
            for number, state in list(run.steps.items()):
                if state.reply is None or number in run.results or run.id not in self.runs:
                    continue
                waiting = True
                self._guarded(run.id, functools.partial(self._check, run, number, now))
        if not waiting:
            self.timers.cancel("sweep")

    def _check(self, run: _Run, number: int, now: float) -> None:
        state = run.steps[number]
        if now > state.deadline:
            self._settle(run, number, timed_out(run.progress.steps[number]))
        elif state.node is not None and not self.ctx.reachable(state.node):
            state.lost.add(state.node)
            lost = PeerUnreachable(f"node {state.node!r} is suspected or has left the cluster")
            self._retry_later(run, number, lost)

    def _settle(self, run: _Run, number: int, result: StepResult) -> None:
        """Record step ``number``'s result in etcd, then move on."""
        if not result.ok:
            step = run.progress.steps[number]
            error = {**(result.error or {}), "step": number, "target": step.target}
            result = StepResult(False, error=error)
            log.info("workflow %s: step %d (%s) failed: %s", run.id, number, step.target,
                     error.get("message"))  # fmt: skip
        status = {**run.status, "done": run.status.get("done", 0) + 1}
        try:
            kept = self.ctx.store.record(run.claimed, number, result, status)
        except (MessageTooLarge, InvalidMessage) as error:
            result = StepResult(False, error={**error_record(error), "step": number,
                                              "target": run.progress.steps[number].target})  # fmt: skip
            kept = self.ctx.store.record(run.claimed, number, result, status)
        if not kept:
            log.warning("workflow %s: another node coordinates it now; letting go", run.id)
            self._forget(run.id)
            return
        run.status = status
        run.results[number] = result
        self.timers.cancel(("retry", run.id, number))
        state = run.steps.pop(number, None)
        if state is not None:
            _release(state)
        self._advance(run)

    def _finish(
        self,
        run: _Run,
        *,
        result: Any = None,
        error: dict[str, Any] | None = None,
        handler: int | None = None,
    ) -> None:
        outcome: dict[str, Any] = {**run.status, "finished": time.time()}
        if error is None:
            outcome.update(status="succeeded", result=result)
        else:
            outcome.update(status="failed", error=error)
            if handler is not None and handler in run.results:
                outcome["handler"] = run.results[handler].to_record()
        try:
            kept = self.ctx.store.finish(run.claimed, outcome)
        except (MessageTooLarge, InvalidMessage) as too_large:
            outcome = {**run.status, "finished": time.time(), "status": "failed",
                       "error": error_record(too_large)}  # fmt: skip
            kept = self.ctx.store.finish(run.claimed, outcome)
        if kept:
            log.info("workflow %s %s", run.id, outcome["status"])
        self._forget(run.id)


def _release(state: StepAttempt) -> None:
    """Free the step's slot of its capability's limit, if it holds one."""
    grant, state.grant = state.grant, None
    if grant is not None:
        grant.release()
