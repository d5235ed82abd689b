"""Prometheus metrics of a node, read from its parts at scrape time.

Nothing here runs on the message path: the collector reads the counters
the actor system, the transport and the cluster keep anyway, once per
scrape (in the HTTP request thread).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from taskmesh.node import Node

__all__ = ["NodeCollector"]


class NodeCollector(Collector):
    """Exposes one node's figures as ``taskmesh_*`` metrics."""

    def __init__(self, node: Node) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        node = self._node
        transport = node.transport.snapshot()
        yield _counter(
            "messages_in", "Messages received from other processes.", transport["messages_in"]
        )
        yield _counter(
            "messages_out", "Messages sent to other processes.", transport["messages_out"]
        )
        yield _counter("bytes_in", "Bytes received from other processes.", transport["bytes_in"])
        yield _counter("bytes_out", "Bytes sent to other processes.", transport["bytes_out"])
        yield _counter(
            "malformed_frames",
            "Inbound frames dropped as malformed.",
            transport["malformed_frames"],
        )
        dead = CounterMetricFamily(
            "taskmesh_messages_dead", "Undelivered messages by reason.", labels=["reason"]
        )
        for reason, count in sorted(node.dead_letters.counts().items()):
            dead.add_metric([reason], count)
        yield dead
        yield _counter(
            "restarts", "Actor restarts ordered by supervisors.", node.system.restart_count
        )

        histogram = node.ask_latency
        yield HistogramMetricFamily(
            "taskmesh_ask_latency_seconds",
            "Latency of asks sent through node refs and capability refs.",
            buckets=histogram.cumulative(),
            sum_value=histogram.total,
        )
        depth = GaugeMetricFamily(
            "taskmesh_mailbox_depth", "Queued messages per actor.", labels=["actor"]
        )
        for actor, queued in sorted(node.system.mailbox_depths().items()):
            depth.add_metric([actor], queued)
        yield depth
        yield _gauge("actors", "Live actors on this node.", len(node.system.names()))

        peers = transport.get("peers", {})
        yield _gauge(
            "peers", "Peers with a live link.", sum(1 for s in peers.values() if s == "up")
        )
        yield _gauge(
            "suspect_peers", "Peers that stopped answering heartbeats.",
            sum(1 for s in peers.values() if s == "suspect"),
        )  # fmt: skip
        yield _gauge("asks_pending", "Remote asks waiting for a reply.", transport["asks_pending"])
        yield _gauge("members", "Live members of the cluster.", len(node.members()))
        yield _gauge("leader", "1 if this node leads the cluster.", 1 if node.is_leader else 0)
        yield _gauge("ready", "1 once registered in etcd and serving.", 1 if node.ready() else 0)
        member = node.member
        errors = member.client.error_count if member is not None else 0
        yield _counter("etcd_errors", "Failed etcd calls.", errors)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"taskmesh_{name}", doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"taskmesh_{name}", doc, value=value)
