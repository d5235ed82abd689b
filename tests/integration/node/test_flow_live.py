"""Flow control across nodes: a full mailbox on a node slows its remote
senders down instead of losing their messages, and slows nothing else."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

import taskmesh
from tests.integration.node.support import running_node
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


def test_a_full_remote_mailbox_slows_the_sender_and_nothing_is_lost(etcd_url: str) -> None:
    cluster = "t" + uuid.uuid4().hex[:8]
    with (
        running_node(
            "--etcd", etcd_url, "--cluster", cluster,
            "--app", "tests.integration.node.apps:gated", name="flow",
        ),
        taskmesh.connect(etcd=etcd_url, cluster=cluster, send_timeout=60.0) as client,
    ):  # fmt: skip
        gated, gate = client.ref("gated"), client.ref("gate")
        sent = 5_000  # five times the mailbox; the gate is closed
        done = threading.Event()
        errors: list[BaseException] = []

        def produce() -> None:
            try:
                for i in range(sent):
                    gated.tell(i)
            except BaseException as error:  # reported below
                errors.append(error)
            finally:
                done.set()

        producer = threading.Thread(target=produce)
        producer.start()
        try:
            # The mailbox fills (one message is held in receive) and the
            # producer is held back, not shed.
            wait_until(lambda: gate.ask("depth", timeout=10.0) >= 999, 30, message="full")
            assert not done.wait(1.0), "the producer was not slowed down"
            # Meanwhile the node serves everyone else at once, and is not suspected.
            started = time.monotonic()
            answer: dict[str, Any] = client.ask("echo-flow", "still here?", timeout=10.0)
            assert answer["echo"] == "still here?"
            assert time.monotonic() - started < 5.0
            assert client.reachable("flow")
            # An ask to the full actor waits for room within its timeout.
            count = gated.ask_async("count", timeout=60.0)
            gate.tell("open")
            assert done.wait(60), "the producer never finished"
            assert errors == []
            assert count.get(60) >= 1_000  # answered in order, behind what waited
            assert gated.ask("count", timeout=60.0) == sent  # every tell arrived
        finally:
            gate.tell("open")
            producer.join(60)
        assert client.dead_letters.counts() == {}


def test_a_sender_that_cannot_wait_longer_gets_mailbox_full_and_a_dead_letter(
    etcd_url: str,
) -> None:
    cluster = "t" + uuid.uuid4().hex[:8]
    with (
        running_node(
            "--etcd", etcd_url, "--cluster", cluster,
            "--app", "tests.integration.node.apps:gated", name="full",
        ),
        taskmesh.connect(etcd=etcd_url, cluster=cluster, send_timeout=1.0) as client,
    ):  # fmt: skip
        gated = client.ref("gated")
        with pytest.raises(taskmesh.MailboxFull):
            for i in range(20_000):  # far more than the mailbox and the window
                gated.tell(i)
        counts = client.dead_letters.counts()
        assert counts == {"mailbox_full": 1}
        letter = client.dead_letters.recent()[-1]
        assert letter.recipient.endswith("/gated") and "within 1 s" in letter.error
        # A sender that prefers shedding is not held at all.
        started = time.monotonic()
        gated.tell("shed", block=False)
        assert time.monotonic() - started < 1.0
        assert client.dead_letters.counts() == {"mailbox_full": 2}
        client.ref("gate").tell("open")
