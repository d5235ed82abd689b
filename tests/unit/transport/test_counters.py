"""Counters and the rate-limited log."""

from __future__ import annotations

import logging

import pytest

from taskmesh.transport.counters import Counters, RateLimitedLog, Tally


def test_snapshot_sums_the_tallies_of_every_socket_into_plain_ints() -> None:
    router, link = Tally(), Tally()
    router.messages_in += 3
    link.messages_in += 2
    link.frames_out += 1
    counters = Counters()
    counters.suspect_peers += 1
    snap = counters.snapshot([router, link])
    assert snap["messages_in"] == 5
    assert snap["frames_out"] == 1
    assert snap["suspect_peers"] == 1
    assert all(type(value) is int for value in snap.values())


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
