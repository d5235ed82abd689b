"""Inline actors on a real node: remote asks run on the transport's I/O thread."""

from __future__ import annotations

import uuid

import pytest

import taskmesh
from tests.integration.node.support import running_node


def test_an_inline_actor_serves_remote_asks_in_order_and_fails_cleanly(etcd_url: str) -> None:
    cluster = "t" + uuid.uuid4().hex[:8]
    with (
        running_node(
            "--etcd", etcd_url, "--cluster", cluster,
            "--app", "tests.integration.node.apps:inline_echo", name="iota",
        ),
        taskmesh.connect(etcd=etcd_url, cluster=cluster) as client,
    ):  # fmt: skip
        answer = client.ask("inline", "hi", timeout=10.0)
        assert answer["echo"] == "hi" and answer["thread"] == "taskmesh-transport-io"

        # FIFO per sender across tells and asks, whichever thread runs them.
        for i in range(10_000):
            client.tell("inline", {"record": i})
            if i % 1000 == 0:
                assert client.ask("inline", i, timeout=10.0)["echo"] == i
        assert client.ask("inline", "told", timeout=30.0) == list(range(10_000))

        # A failure reaches the asker; the supervisor restarts the actor.
        with pytest.raises(taskmesh.RemoteError) as failed:
            client.ask("inline", {"fail": "boom"}, timeout=10.0)  # raised on the I/O thread
        assert failed.value.type_name == "ValueError" and "boom" in str(failed.value)
        assert client.ask("inline", "told", timeout=10.0) == []  # a fresh instance

        # A sync ask from an inline receive would stall the node: refused.
        with pytest.raises(taskmesh.RemoteError) as refused:
            client.ask("inline", {"ask": "threaded"}, timeout=10.0)
        assert refused.value.type_name == "ActorError"
        assert "I/O thread" in str(refused.value)
        assert client.ask("inline", "again", timeout=10.0)["echo"] == "again"
