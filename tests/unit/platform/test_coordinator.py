"""The coordinator actor, with a fake store and fake targets: retries on
another holder, no polling for a chord, deadlines, stale answers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import taskmesh
from taskmesh import chain, chord, group, step
from taskmesh.actors.future import Reply
from taskmesh.addressing import Located
from taskmesh.errors import PeerUnreachable
from taskmesh.platform.admission import Grant
from taskmesh.platform.canvas import Step, Workflow, to_record
from taskmesh.platform.coordinator import Coordinator, CoordinatorContext
from taskmesh.platform.progress import StepResult
from taskmesh.platform.workflow_store import Claimed, WorkflowStore
from tests.waiting import wait_until


class FakeStore(WorkflowStore):
    """Keeps what the coordinator records, in memory."""

    def __init__(self) -> None:
        self.recorded: list[tuple[str, int, StepResult]] = []
        self.finished: dict[str, dict[str, Any]] = {}

    def create(
        self, workflow_id: str, definition: dict[str, Any], steps: int, node: str, lease: int
    ) -> Claimed | None:
        return Claimed(workflow_id, definition, {"status": "running", "steps": steps}, {}, 1)

    def claim(self, workflow_id: str, node: str, lease: int) -> Claimed | None:
        return None

    def unclaimed(self) -> list[str]:
        return []

    def claimed_by(self, node: str) -> list[str]:
        return []

    def record(
        self, claimed: Claimed, number: int, result: StepResult, status: dict[str, Any]
    ) -> bool:
        self.recorded.append((claimed.workflow_id, number, result))
        return True

    def finish(self, claimed: Claimed, status: dict[str, Any]) -> bool:
        self.finished[claimed.workflow_id] = status
        return True


@dataclass
class Asked:
    node: str
    message: Any
    key: str | None
    reply: Reply


@dataclass
class Cluster:
    """Two holders of every capability, ``n1`` and ``n2``; asks are kept
    for the test to answer."""

    asked: list[Asked] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def locate(self, target: Step, lost: frozenset[str], key: str) -> Located | None:
        cluster = self

        class Target:
            def __init__(self, node: str) -> None:
                self.node = node

            def tell(self, message: Any) -> None:
                raise AssertionError("steps are asks")

            def ask_async(
                self, message: Any, *, timeout: float | None = None,
                idempotency_key: str | None = None,
            ) -> Reply:  # fmt: skip
                reply = Reply()
                with cluster.lock:
                    cluster.asked.append(Asked(self.node, message, idempotency_key, reply))
                return reply

        for node in ("n1", "n2"):
            if node not in lost:
                return node, Target(node)
        return None

    def wait_asks(self, count: int) -> list[Asked]:
        wait_until(lambda: len(self.asked) >= count, timeout=10.0, message=f"{count} asks")
        return self.asked


@pytest.fixture
def run() -> Iterator[tuple[Cluster, FakeStore, Any]]:
    system = taskmesh.ActorSystem(ask_timeout=10.0)
    cluster, store = Cluster(), FakeStore()
    context = CoordinatorContext(
        node="n0", store=store, lease=lambda: 1, locate=cluster.locate,
        reachable=lambda node: node not in cluster.gone,
    )  # fmt: skip
    coordinator = system.spawn(Coordinator, context, name="_workflows")

    def start(workflow: Workflow | dict[str, Any], workflow_id: str = "w") -> Any:
        if isinstance(workflow, dict):  # a raw request, as a peer may send one
            return coordinator.ask({"op": "start", "id": workflow_id, "workflow": workflow})
        answer = coordinator.ask(
            {"op": "start", "id": workflow_id, "workflow": to_record(workflow)}
        )
        assert answer == {"id": workflow_id}

    try:
        yield cluster, store, start
    finally:
        system.stop()


def test_a_lost_node_sends_the_step_to_another_holder_under_the_same_key(run: Any) -> None:
    cluster, store, start = run
    start(chain(step("work", {"n": 1}, capability=True), step("work", capability=True)))
    first = cluster.wait_asks(1)[0]
    assert (first.node, first.message, first.key) == ("n1", {"n": 1}, "w:0")
    first.reply.fail(PeerUnreachable("n1 is gone"))
    again = cluster.wait_asks(2)[1]
    assert (again.node, again.message, again.key) == ("n2", {"n": 1}, "w:0")
    again.reply.set({"m": 2})
    then = cluster.wait_asks(3)[2]
    assert (then.message, then.key) == ({"m": 2}, "w:1"), "the result is the next message"
    then.reply.set("end")
    wait_until(lambda: "w" in store.finished)
    assert store.finished["w"]["status"] == "succeeded" and store.finished["w"]["result"] == "end"
    assert [number for _, number, _ in store.recorded] == [0, 1]


def test_a_suspected_node_is_given_up_without_waiting_for_the_timeout(run: Any) -> None:
    cluster, store, start = run
    start(step("work", "x", capability=True, timeout=30.0))
    cluster.gone.add("n1")  # no error comes back: the node just went silent
    again = cluster.wait_asks(2)[1]
    assert (again.node, again.key) == ("n2", "w:0")
    cluster.asked[0].reply.set("late")  # the first try answers after all: take it
    again.reply.set("second")
    wait_until(lambda: "w" in store.finished)
    assert store.finished["w"]["result"] == "late"
    assert len(store.recorded) == 1, "one result recorded per step"


def test_a_chord_body_is_asked_when_the_last_member_answers_and_not_before(run: Any) -> None:
    cluster, store, start = run
    start(chord([step("resize", {"img": i}, capability=True) for i in range(3)],
                step("merge", capability=True)))  # fmt: skip
    members = cluster.wait_asks(3)
    for i in (2, 0):
        members[i].reply.set(i * 10)
    wait_until(lambda: len(store.recorded) == 2)
    assert len(cluster.asked) == 3, "the body waits for the last member"
    members[1].reply.set(10)
    body = cluster.wait_asks(4)[3]
    assert (body.message, body.key) == ([0, 10, 20], "w:3")


def test_an_unanswered_step_fails_at_its_timeout_and_runs_the_handler(run: Any) -> None:
    cluster, store, start = run
    handler = step("alerts", {"severity": "high"})
    start(chain(step("work", "x", capability=True, timeout=0.3), on_error=handler))
    alert = cluster.wait_asks(2)[1]
    assert alert.message == {
        "workflow": "w", "failed": "work", "severity": "high",
        "error": {"type": "AskTimeout", "message": "step 'work' got no answer within 0.3 s"},
    }  # fmt: skip
    alert.reply.set("alerted")
    wait_until(lambda: "w" in store.finished)
    outcome = store.finished["w"]
    assert outcome["status"] == "failed" and outcome["error"]["type"] == "AskTimeout"
    assert outcome["handler"] == {"ok": "alerted"}


def test_an_actor_error_fails_the_step_at_once_without_retries(run: Any) -> None:
    cluster, store, start = run
    start(step("work", "x", capability=True, retries=3))
    cluster.wait_asks(1)[0].reply.fail(ValueError("bad input"))
    wait_until(lambda: "w" in store.finished)
    assert len(cluster.asked) == 1
    error = store.finished["w"]["error"]
    assert (error["type"], error["message"], error["target"]) == ("ValueError", "bad input", "work")


def test_a_bad_request_is_answered_and_costs_no_running_workflow(run: Any) -> None:
    cluster, store, start = run
    start(step("work", "x", capability=True))
    asked = cluster.wait_asks(1)[0]
    refused = start({"nothing": 1}, workflow_id="bad")
    assert refused["error"]["type"] == "ConfigError"
    assert "none of step" in refused["error"]["message"]
    asked.reply.set("fine")  # the coordinator was not restarted: it still drives "w"
    wait_until(lambda: "w" in store.finished)
    assert store.finished["w"]["result"] == "fine"


class FakeGate:
    """A limit on ``resize`` whose leave the test hands out by hand."""

    def __init__(self) -> None:
        self.waiting: list[Callable[[Grant | None], None]] = []
        self.released = 0

    def admit(self, key: str | None, deadline: float, callback: Any) -> Grant | None:
        self.waiting.append(callback)
        return None

    def release(self, grant: Grant) -> None:
        grant.released = True
        self.released += 1


def test_a_limited_step_is_asked_once_admitted_and_frees_its_slot_when_settled() -> None:
    system = taskmesh.ActorSystem(ask_timeout=10.0)
    cluster, store, gate = Cluster(), FakeStore(), FakeGate()
    context = CoordinatorContext(
        node="n0", store=store, lease=lambda: 1, locate=cluster.locate,
        reachable=lambda node: True,
        gate=lambda capability: gate if capability == "resize" else None,  # type: ignore[arg-type,return-value]
    )  # fmt: skip
    try:
        coordinator = system.spawn(Coordinator, context, name="_workflows")
        workflow = group(step("resize", 1, capability=True), step("resize", 2, capability=True))
        coordinator.ask({"op": "start", "id": "w", "workflow": to_record(workflow)})
        wait_until(lambda: len(gate.waiting) == 2)
        assert cluster.asked == [], "nothing is asked before its leave comes"
        gate.waiting[0](Grant(gate))
        first = cluster.wait_asks(1)[0]
        assert first.message == 1
        first.reply.set("one")
        wait_until(lambda: gate.released == 1)
        gate.waiting[1](None)  # no token within the step's timeout
        wait_until(lambda: "w" in store.finished)
        error = store.finished["w"]["error"]
        assert (error["type"], error["step"]) == ("LimitTimeout", 1)
        assert len(cluster.asked) == 1
    finally:
        system.stop()
