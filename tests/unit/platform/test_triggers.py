"""Triggers: due times of interval and cron schedules, and misfire plans."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from taskmesh.errors import ConfigError
from taskmesh.platform.misfire import RunOnce, Skip, plan, policy
from taskmesh.platform.triggers import Cron, Interval, tick_id


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_an_interval_is_due_every_n_seconds_after_its_anchor_without_drift() -> None:
    every = Interval(2.0, anchor=100.0)
    assert every.next_after(100.0) == 102.0
    assert every.next_after(101.999) == 102.0
    assert every.next_after(102.0) == 104.0
    assert every.next_after(50.0) == 102.0, "never before the anchor"
    assert every.latest_until(107.0) == 106.0
    assert every.latest_until(101.0) is None
    assert every.count(102.0, 110.0) == 5
    assert every.next_after(100.0 + 2.0 * 100_000) == 100.0 + 2.0 * 100_001


def test_a_cron_schedule_is_due_at_the_times_it_names_in_its_time_zone() -> None:
    nightly = Cron("0 2 * * *")
    assert nightly.next_after(at("2025-03-01T01:59:59")) == at("2025-03-01T02:00:00")
    assert nightly.next_after(at("2025-03-01T02:00:00")) == at("2025-03-02T02:00:00")
    assert nightly.latest_until(at("2025-03-02T02:00:00")) == at("2025-03-02T02:00:00")
    assert nightly.latest_until(at("2025-03-02T01:00:00")) == at("2025-03-01T02:00:00")
    assert nightly.count(at("2025-03-01T00:00:00"), at("2025-03-05T00:00:00")) == 4
    berlin = Cron("0 2 * * *", "Europe/Berlin")  # 02:00 CET is 01:00 UTC in winter
    assert berlin.next_after(at("2025-01-10T00:00:00")) == at("2025-01-10T01:00:00")
    assert Cron("*/2 * * * * *").next_after(at("2025-01-01T00:00:00")) == at("2025-01-01T00:00:02")


def test_a_tick_is_named_by_its_due_time_in_utc() -> None:
    assert tick_id(at("2025-03-01T02:00:00")) == "2025-03-01T02:00:00.000Z"
    assert tick_id(at("2025-03-01T02:00:00") + 0.25) == "2025-03-01T02:00:00.250Z"


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: Cron("61 * * * *"), "not valid"),
        (lambda: Cron("* * *"), "not valid"),
        (lambda: Cron("0 2 * * *", "Mars/Olympus"), "unknown time zone"),
        (lambda: Interval(0.1, 0.0), "at least 1 s"),
        (lambda: Interval(float("nan"), 0.0), "number of seconds"),
        (lambda: policy("sometimes"), "misfire must be one of"),
    ],
)
def test_bad_timing_is_a_clear_config_error(make: object, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        make()  # type: ignore[operator]


def test_a_tick_late_within_grace_is_fired_and_a_future_one_is_waited_for() -> None:
    every = Interval(2.0, anchor=0.0)
    assert plan(every, Skip(), last=10.0, start=0.0, now=11.0, grace=5.0).wake == 12.0
    assert plan(every, Skip(), last=10.0, start=0.0, now=15.0, grace=5.0).fire == 12.0
    assert plan(every, Skip(), last=None, start=0.0, now=1.0, grace=5.0).wake == 2.0


def test_skip_drops_misfired_ticks_and_keeps_those_within_grace() -> None:
    every = Interval(2.0, anchor=0.0)
    # last fired 10; now 30, grace 5: ticks 12..24 misfired, 26 and 28 are only late
    step = plan(every, Skip(), last=10.0, start=0.0, now=30.0, grace=5.0)
    assert (step.fire, step.dropped, step.dropped_until) == (None, 7, 24.0)
    after = plan(every, Skip(), last=24.0, start=0.0, now=30.0, grace=5.0)
    assert after.fire == 26.0


def test_run_once_fires_the_misfired_ticks_once_as_the_latest() -> None:
    every = Interval(2.0, anchor=0.0)
    step = plan(every, RunOnce(), last=10.0, start=0.0, now=30.0, grace=5.0)
    assert (step.fire, step.dropped) == (24.0, 6)
    nightly = Cron("0 2 * * *")
    down = plan(nightly, RunOnce(), last=at("2025-03-01T02:00:00"), start=0.0,
                now=at("2025-03-05T12:00:00"), grace=60.0)  # fmt: skip
    assert (down.fire, down.dropped) == (at("2025-03-05T02:00:00"), 3)
    skipped = plan(nightly, Skip(), last=at("2025-03-01T02:00:00"), start=0.0,
                   now=at("2025-03-05T12:00:00"), grace=60.0)  # fmt: skip
    assert (skipped.fire, skipped.dropped) == (None, 4)
