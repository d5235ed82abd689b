from __future__ import annotations

from collections import Counter

from taskmesh.entities.plan import plan_shards


def apply(owners: dict[int, str], shards: int, hosts: list[str]) -> dict[int, str]:
    """Run plans until nothing changes, as the leader's rounds do (releases
    happen at once here), and return the final owners."""
    owners = dict(owners)
    for _ in range(10):
        plan = plan_shards(shards, hosts, owners)
        if not plan.assign and not plan.release:
            return owners
        owners.update(plan.assign)
        owners.update(plan.release)
    raise AssertionError("the plan does not settle")


def test_a_fresh_type_is_spread_evenly_over_its_hosts() -> None:
    plan = plan_shards(128, ["c", "a", "b"], {})
    assert sorted(plan.assign) == list(range(128))
    assert sorted(Counter(plan.assign.values()).values()) == [42, 43, 43]
    assert plan.release == {}


def test_a_join_moves_only_what_the_newcomer_needs() -> None:
    before = apply({}, 128, ["a", "b"])
    plan = plan_shards(128, ["a", "b", "c"], before)
    assert plan.assign == {}
    assert len(plan.release) == 42  # 128 // 3: no more than the newcomer's share
    assert set(plan.release.values()) == {"c"}
    after = apply(before, 128, ["a", "b", "c"])
    assert sum(before[s] != after[s] for s in range(128)) == 42
    assert sorted(Counter(after.values()).values()) == [42, 43, 43]


def test_a_leave_moves_only_the_leavers_shards() -> None:
    before = apply({}, 128, ["a", "b", "c"])
    kept = {s: n for s, n in before.items() if n != "b"}
    plan = plan_shards(128, ["a", "c"], kept)
    assert set(plan.assign) == {s for s, n in before.items() if n == "b"}
    assert plan.release == {}
    assert sorted(Counter((kept | plan.assign).values()).values()) == [64, 64]


def test_a_draining_owner_keeps_its_shards_until_it_lets_them_go() -> None:
    before = apply({}, 16, ["a", "b"])
    plan = plan_shards(16, ["a"], before)  # b drains: not eligible, still owns
    assert plan.assign == {} and plan.release == {}
    freed = {s: n for s, n in before.items() if n == "a"}
    plan = plan_shards(16, ["a"], freed)
    assert set(plan.assign.values()) == {"a"} and len(plan.assign) == 8


def test_shards_asked_to_move_are_not_asked_twice() -> None:
    before = apply({}, 12, ["a", "b"])
    first = plan_shards(12, ["a", "b", "c"], before)
    again = plan_shards(12, ["a", "b", "c"], before, releasing=set(first.release))
    assert again.release == {} and again.assign == {}


def test_every_leader_computes_the_same_plan() -> None:
    owners = {0: "a", 1: "a", 2: "a", 3: "b"}
    plans = {repr(plan_shards(10, hosts, owners)) for hosts in (["a", "b", "c"], ["c", "b", "a"])}
    assert len(plans) == 1


def test_no_host_means_no_plan() -> None:
    plan = plan_shards(8, [], {1: "gone"})
    assert plan.assign == {} and plan.release == {}
