"""Workflows run in the cluster: results flow, failures fail, a coordinator's
death loses nothing and doubles nothing."""

from __future__ import annotations

import json
import signal
import uuid
from functools import partial
from typing import Any

import pytest

import taskmesh
from taskmesh import chain, chord, group, step
from taskmesh.errors import WorkflowFailed, WorkflowNotFound, WorkflowTimeout
from tests.integration.node.support import cli, running_node
from tests.waiting import wait_until


def work(message: Any) -> taskmesh.platform.Step:
    return step("work", message, capability=True)


def test_workflows_run_fail_and_survive_their_coordinator(etcd_url: str) -> None:
    cluster = "t" + uuid.uuid4().hex[:8]
    flags = ["--etcd", etcd_url, "--cluster", cluster, "--lease-ttl", "2"]
    with (
        running_node(*flags, "--app", "tests.integration.platform.apps:keeper", name="keeper"),
        running_node(*flags, name="one") as one,
        running_node(*flags, name="two") as two,
        taskmesh.connect(etcd=etcd_url, cluster=cluster) as client,
    ):
        wait_until(lambda: len(client.routes().get("taskmesh.workflows", [])) == 3)

        # a chord: the body gets every member's result, in order
        resize = [step("resize", {"img": i}, capability=True) for i in range(10)]
        assert client.run(chord(resize, step("merge", capability=True)), timeout=60.0) == 90

        # results flow: dicts merge (the step's own keys win), anything else is replaced
        flowed = client.run(
            chain(
                work({"a": 1, "keep": "first"}),
                work({"b": 2, "keep": "second"}),
                group(work(None), work({"c": 3}), work("own")),
            ),
            timeout=60.0,
        )
        assert flowed == [
            {"a": 1, "b": 2, "keep": "second"},
            {"a": 1, "b": 2, "keep": "second", "c": 3},
            "own",
        ]

        # a failing step fails the workflow with the remote error; on_error runs
        with pytest.raises(WorkflowFailed) as failed:
            client.run(
                chain(
                    work({"fail": "bad image"}),
                    work({"job": "never"}),
                    on_error=step("alerts", {"severity": "high"}),
                ),
                timeout=60.0,
            )
        assert (failed.value.type_name, failed.value.message) == ("ValueError", "bad image")
        assert failed.value.target == "work" and "ValueError" in failed.value.traceback
        assert failed.value.handler == {"ok": "alerted"}
        assert client.ask("alerts", "notices") == [{
            "workflow": failed.value.workflow_id, "failed": "work",
            "error": {"type": "ValueError", "message": "bad image"}, "severity": "high",
        }]  # fmt: skip

        # a result too large for etcd fails the workflow with a clear error
        with pytest.raises(WorkflowFailed) as too_large:
            client.run(work({"big": 2_000_000}), timeout=60.0)
        assert too_large.value.type_name == "MessageTooLarge"
        assert "pass a reference" in too_large.value.message

        # the caller may stop waiting; the outcome is fetched later
        with pytest.raises(WorkflowTimeout) as waited:
            client.run(work({"sleep": 1.0, "job": "slow"}), timeout=0.3)
        assert client.result(waited.value.workflow_id, timeout=30.0) == {
            "sleep": 1.0,
            "job": "slow",
        }
        with pytest.raises(WorkflowNotFound):
            client.result("no-such-workflow")

        # kill the node coordinating a workflow between two steps
        workflow_id, coordinator, jobs = _submit_to_a_killable_node(client)
        wait_until(lambda: _info(client, workflow_id)["done"] >= 1, timeout=30.0)
        victim = one if coordinator == "one" else two
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(30)
        assert client.result(workflow_id, timeout=60.0) == {"sleep": 1.0, "job": jobs[-1]}
        counts = client.ask("ledger", "counts")
        assert {job: counts.get(job) for job in jobs} == {job: 1 for job in jobs}, (
            "every step ran once, across the coordinator's death"
        )
        assert "never" not in counts

        listed = json.loads(
            cli("workflows", "--json", "--etcd", etcd_url, "--cluster", cluster).stdout
        )
        statuses = {row["id"]: row["status"] for row in listed}
        assert statuses[workflow_id] == "succeeded"
        assert statuses[failed.value.workflow_id] == "failed"
        assert len(listed) >= 6
        table = cli("workflows", "--etcd", etcd_url, "--cluster", cluster).stdout
        assert "ValueError: bad image" in table and "3/3" in table


def _info(client: taskmesh.Client, workflow_id: str) -> dict[str, Any]:
    return next(w.to_json() for w in client.workflows() if w.workflow_id == workflow_id)


def _coordinator_of(client: taskmesh.Client, workflow_id: str) -> str:
    return str(_info(client, workflow_id)["node"] or "")


def _submit_to_a_killable_node(client: taskmesh.Client) -> tuple[str, str, list[str]]:
    """Submit a three-step chain until a node other than the keeper coordinates
    it (submissions go round robin over the coordinators). Each attempt has
    job names of its own, so the ledger counts only the attempt returned."""
    for attempt in range(4):
        jobs = [f"job-{attempt}-{i}" for i in range(3)]
        workflow = chain(*(work({"sleep": 1.0, "job": job}) for job in jobs))
        workflow_id = client.submit(workflow)
        node = wait_until(partial(_coordinator_of, client, workflow_id), timeout=30.0)
        if node != "keeper":
            return workflow_id, node, jobs
        client.result(workflow_id, timeout=60.0)
    raise AssertionError("every submission went to the keeper")
