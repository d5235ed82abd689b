"""The leader's placement plan for one entity type: balanced, with minimal movement.

Given the shard count, the nodes that may take shards (hosting the type,
not draining) and who owns what now, :func:`plan_shards` says which
unassigned shards go where and which owned shards must move:

- every eligible node gets ``shards // n`` or one more (the nodes that own
  the most now keep the extra ones, so fewer shards move);
- a shard stays where it is unless its owner holds more than its quota:
  only that excess moves, so a join moves about ``shards / n`` shards and a
  leave moves only the leaver's;
- unassigned shards fill the nodes furthest below quota first; ties go by
  node name, so every leader computes the same plan.

Pure: no etcd, no clock (the placer applies it).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["Plan", "plan_shards"]


@dataclass(frozen=True, slots=True)
class Plan:
    """``assign``: unassigned shard -> node; ``release``: owned shard -> the
    node it should move to (its owner is asked to hand it over first)."""

    assign: dict[int, str] = field(default_factory=dict)
    release: dict[int, str] = field(default_factory=dict)


def plan_shards(
    shards: int,
    hosts: Sequence[str],
    owners: Mapping[int, str],
    releasing: Collection[int] = (),
) -> Plan:
    """Plan one type; ``owners`` maps every assigned shard to its owner (an
    owner not in ``hosts``, e.g. a draining node, keeps its shards until it
    lets them go); ``releasing`` holds shards already asked to move."""
    eligible = sorted(set(hosts))
    if not eligible:
        return Plan()
    mine: dict[str, list[int]] = {node: [] for node in eligible}
    for shard, owner in owners.items():
        if owner in mine:
            mine[owner].append(shard)
    base, extra = divmod(shards, len(eligible))
    by_holding = sorted(eligible, key=lambda node: (-len(mine[node]), node))
    quota = {node: base + (1 if i < extra else 0) for i, node in enumerate(by_holding)}
    load: dict[str, int] = {}
    moving: list[int] = []
    for node in eligible:
        held = sorted(mine[node])
        leaving = [s for s in held if s in releasing]
        staying = [s for s in held if s not in releasing]
        more = len(held) - quota[node] - len(leaving)
        if more > 0:
            moving.extend(staying[-more:])  # the highest shard numbers move
            staying = staying[:-more]
        load[node] = len(staying)

    def neediest() -> str:
        return min(eligible, key=lambda node: (load[node] - quota[node], node))

    plan = Plan()
    for shard in range(shards):
        if shard not in owners:
            node = neediest()
            plan.assign[shard] = node
            load[node] += 1
    for shard in sorted(moving):
        node = neediest()
        plan.release[shard] = node
        load[node] += 1
    return plan
