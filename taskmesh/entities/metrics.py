"""Prometheus metrics of a node's sharded entities, read at scrape time.

Per entity type hosted here (label ``type``): activations, passivations
and shard handoffs so far (counters), and now: active entities, shards
served, and messages buffered (waiting for a moving shard, here or held by
the sender side). Nothing here runs on the message path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from taskmesh.node import Node

__all__ = ["EntityCollector"]


class EntityCollector(Collector):
    """Exposes one node's entity figures as ``taskmesh_entity*`` metrics."""

    def __init__(self, node: Node) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        entities = self._node.entities
        hosts = dict(entities.hosts) if entities is not None else {}
        counters = {
            "activations": ("taskmesh_entity_activations", "Entities activated here."),
            "passivations": (
                "taskmesh_entity_passivations",
                "Activations ended here (idle, handed over, lost).",
            ),
            "handoffs": ("taskmesh_entity_handoffs", "Shards handed over to another node."),
        }
        gauges = {
            "active": ("taskmesh_entities_active", "Entities active here now."),
            "shards": ("taskmesh_entity_shards", "Shards served here now."),
            "buffered": (
                "taskmesh_entity_buffered_messages",
                "Messages waiting for a moving shard, here or held to send.",
            ),
        }
        figures = {}
        for entity_type, host in sorted(hosts.items()):
            figures[entity_type] = host.stats()
            if entities is not None:
                figures[entity_type]["buffered"] += entities.router.pending_count(entity_type)
        for key, (name, doc) in counters.items():
            counter = CounterMetricFamily(name, doc, labels=["type"])
            for entity_type, values in figures.items():
                counter.add_metric([entity_type], values[key])
            yield counter
        for key, (name, doc) in gauges.items():
            gauge = GaugeMetricFamily(name, doc, labels=["type"])
            for entity_type, values in figures.items():
                gauge.add_metric([entity_type], values[key])
            yield gauge
