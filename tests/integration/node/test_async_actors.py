"""Async actors on real nodes: they await each other across processes, and
plain asyncio code awaits them through the client."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

import taskmesh
from tests.integration.node.support import running_node


def test_async_actors_on_two_nodes_ask_each_other_by_name_and_by_capability(
    etcd_url: str,
) -> None:
    cluster = "t" + uuid.uuid4().hex[:8]
    app = "tests.integration.node.apps:async_pair"
    common = ("--etcd", etcd_url, "--cluster", cluster, "--app", app)
    with running_node(*common, name="a"), running_node(*common, name="b"):

        async def main() -> tuple[list[Any], Any]:
            async with taskmesh.connect(etcd=etcd_url, cluster=cluster) as client:
                asks = [
                    client.ask_async(f"pinger-{me}", {"to": f"pong-{other}", "n": i}, timeout=20.0)
                    for i in range(10)
                    for me, other in (("a", "b"), ("b", "a"))
                ]  # concurrent: each pinger runs up to 8 at once, each awaiting the other node
                answers = await asyncio.gather(*asks)
                direct = await client.capability("pong").ask_async("direct", timeout=10.0)
                with pytest.raises(taskmesh.RemoteError, match="async boom"):
                    await client.ref("pong-b").ask_async("boom", timeout=10.0)
                return answers, direct

        answers, direct = asyncio.run(main())
    expected = [{"pong": i, "node": other} for i in range(10) for other in ("b", "a")]
    assert [a["by_name"] for a in answers] == expected
    assert [a["by_capability"]["pong"] for a in answers] == [e["pong"] for e in expected]
    assert {a["by_capability"]["node"] for a in answers} <= {"a", "b"}
    assert direct["pong"] == "direct"
