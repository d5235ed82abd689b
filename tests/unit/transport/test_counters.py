"""Counters and the rate-limited log."""

from __future__ import annotations

import logging

import pytest

from taskmesh.transport.counters import Counters, RateLimitedLog


def test_snapshot_is_a_plain_dict_with_dead_letters_by_reason() -> None:
    counters = Counters()
    counters.messages_in += 3
    counters.dead_letter("queue_full")
    counters.dead_letter("queue_full", 2)
    counters.dead_letter("expired")
    snap = counters.snapshot()
    assert snap["messages_in"] == 3
    assert snap["dead_letters"] == {"queue_full": 3, "expired": 1}
    assert snap["dead_letters_total"] == 4
    snap["dead_letters"]["expired"] = 99
    assert counters.snapshot()["dead_letters"]["expired"] == 1


def test_rate_limited_log_reports_skipped_lines_with_the_next_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    limited = RateLimitedLog(logging.getLogger("taskmesh.test"), interval=5.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="taskmesh.test"):
        for _ in range(1000):
            limited.warning("bad", "bad frame %s", "x")
        limited.warning("other", "another key")
        now[0] += 5.0
        limited.warning("bad", "bad frame %s", "y")
    assert [r.getMessage() for r in caplog.records] == [
        "bad frame x",
        "another key",
        "bad frame y (999 more since last report)",
    ]
