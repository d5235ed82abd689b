from __future__ import annotations

from collections import Counter

import pytest

from taskmesh.entities.shards import (
    barrier_target,
    entity_target,
    parse_barrier,
    parse_target,
    shard_of,
    validate_entity_id,
    validate_shards,
)
from taskmesh.errors import ConfigError, InvalidName


def test_an_id_maps_to_the_same_shard_in_every_process() -> None:
    # CRC-32 of the UTF-8 id (mixed), not hash(): the same on every machine and run.
    assert shard_of("dock-3", 128) == 76
    assert shard_of("émile", 7) == 0


def test_a_few_sequential_ids_spread_over_both_halves_of_the_shards() -> None:
    # Plain crc32 put dock-0 ... dock-11 all in shards 0-63: a node that
    # joined later (and took shards 64-127) got none of them.
    for prefix in ("dock-", "user-", "order-", "device-", "sensor/"):
        shards = [shard_of(f"{prefix}{i}", 128) for i in range(12)]
        assert len(set(shards)) >= 10, prefix
        assert 2 <= sum(shard >= 64 for shard in shards) <= 10, prefix


def test_ids_spread_evenly_over_the_shards() -> None:
    counts = Counter(shard_of(f"device-{i}", 128) for i in range(128_000))
    assert len(counts) == 128
    assert max(counts.values()) < 1.2 * 1000 and min(counts.values()) > 0.8 * 1000


def test_targets_round_trip_also_with_slashes_in_the_id() -> None:
    name = entity_target("device", 42, "site/a/dock-3")
    assert name.startswith("~")
    assert parse_target(name) == ("device", 42, "site/a/dock-3")
    assert parse_barrier(barrier_target("device", 7, 99)) == ("device", 7, 99)


@pytest.mark.parametrize("name", ["~device", "~device/x/id", "~device/3/", "~/3"])
def test_malformed_targets_parse_to_none(name: str) -> None:
    assert parse_target(name) is None


def test_entity_ids_are_any_short_unicode_text() -> None:
    assert validate_entity_id("user@example.com/42 ☃") == "user@example.com/42 ☃"
    for bad in ("", "x" * 257, 42, "\ud800"):
        with pytest.raises(InvalidName):
            validate_entity_id(bad)


def test_shard_counts_are_bounded() -> None:
    assert validate_shards(1) == 1
    for bad in (0, 4097, True, 12.0):
        with pytest.raises(ConfigError):
            validate_shards(bad)
