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

from taskmesh.ops.introspect import RUNTIME_ACTORS, local_capabilities

if TYPE_CHECKING:
    from taskmesh.node import Node

__all__ = ["DEAD_LETTER_REASONS", "NodeCollector"]

DEAD_LETTER_REASONS: tuple[str, ...] = (
    "actor_not_found", "actor_stopped", "deliver_failed", "expired", "limited", "mailbox_full",
    "misfired", "no_route", "peer_unreachable", "poison", "queue_full", "reply_queue_full",
    "reply_undeliverable", "too_large", "unhandled",
)  # fmt: skip
"""Every reason the runtime records. Their series exist from the first
scrape at 0, so that ``rate()`` and alerts see the first dead letter."""


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
        counts = dict.fromkeys(DEAD_LETTER_REASONS, 0) | node.dead_letters.counts()
        for reason, count in sorted(counts.items()):
            dead.add_metric([reason], count)
        yield dead
        yield _counter(
            "restarts", "Actor restarts ordered by supervisors.", node.system.restart_count
        )

        histogram = node.ask_latency
        yield HistogramMetricFamily(
            "taskmesh_ask_latency_seconds",
            "Latency of the asks this node sent (node.ref, node.capability, actors' asks).",
            buckets=histogram.cumulative(),
            sum_value=histogram.total,
        )
        handling = node.transport.handling
        if handling is not None:
            yield HistogramMetricFamily(
                "taskmesh_handling_seconds",
                "Asks from other nodes served here: from arrival to answer (queue and receive).",
                buckets=handling.cumulative(),
                sum_value=handling.total,
            )
        taken = CounterMetricFamily(
            "taskmesh_actor_messages",
            "Messages each named actor of this node has taken (generated names left out).",
            labels=["actor"],
        )
        for actor, count in sorted(node.system.message_counts().items()):
            if not actor.startswith("_"):
                taken.add_metric([actor], count)
        yield taken
        depths = node.system.mailbox_depths()
        for name in RUNTIME_ACTORS:  # the runtime's own actors
            depths.pop(name, None)
        depth = GaugeMetricFamily(
            "taskmesh_mailbox_depth", "Queued messages per actor.", labels=["actor"]
        )
        for actor, queued in sorted(depths.items()):
            depth.add_metric([actor], queued)
        yield depth
        backlog = GaugeMetricFamily(
            "taskmesh_capability_backlog",
            "Queued messages of this node's actors holding each capability (for autoscaling).",
            labels=["capability"],
        )
        for capability, queued in sorted(capability_backlog(node, depths).items()):
            backlog.add_metric([capability], queued)
        yield backlog
        yield _gauge("actors", "Live actors on this node.", len(depths))

        members = node.members()
        others = [m for m in members if m != node.node_id]
        yield _gauge(
            "peers", "Other live members this node does not suspect (it can reach them).",
            sum(1 for m in others if node.reachable(m)),
        )  # fmt: skip
        links = transport.get("peers", {})
        yield _gauge(
            "suspect_peers", "Connections to peers that stopped answering heartbeats.",
            sum(1 for s in links.values() if s == "suspect"),
        )  # fmt: skip
        by_state = GaugeMetricFamily(
            "taskmesh_links", "This node's connections to peers, by state.", labels=["state"]
        )
        for state in ("connecting", "up", "suspect", "down"):
            by_state.add_metric([state], sum(1 for s in links.values() if s == state))
        yield by_state
        yield _gauge("asks_pending", "Remote asks waiting for a reply.", transport["asks_pending"])
        yield _gauge("members", "Live members of the cluster.", len(members))
        yield _gauge("leader", "1 if this node leads the cluster.", 1 if node.is_leader else 0)
        yield _gauge("ready", "1 once registered in etcd and serving.", 1 if node.ready() else 0)
        member = node.member
        errors = member.client.error_count if member is not None else 0
        yield _counter("etcd_errors", "Failed etcd calls.", errors)


def capability_backlog(node: Node, depths: dict[str, int]) -> dict[str, int]:
    """Capability -> messages queued at this node's actors that hold it."""
    backlog: dict[str, int] = {}
    for actor, capabilities in local_capabilities(node).items():
        for capability in capabilities:
            backlog[capability] = backlog.get(capability, 0) + depths.get(actor, 0)
    return backlog


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"taskmesh_{name}", doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"taskmesh_{name}", doc, value=value)
