"""Schedule definitions: validation, the delivered payload, re-declaration."""

from __future__ import annotations

from typing import Any

import pytest

from taskmesh.errors import ConfigError, InvalidMessage, InvalidName, MessageTooLarge
from taskmesh.platform.records import MAX_RECORD, decode, encode
from taskmesh.platform.schedules import Schedule


@pytest.mark.parametrize(
    ("options", "error", "fragment"),
    [
        ({"to": "r", "cron": "0 2 * * *", "every": 5.0}, ConfigError, "exactly one of"),
        ({"to": "r"}, ConfigError, "exactly one of"),
        ({"to": "bad name", "every": 5.0}, InvalidName, "invalid actor name"),
        ({"to": "r", "every": 5.0, "misfire": "later"}, ConfigError, "misfire must be"),
        ({"to": "r", "every": 5.0, "retries": -1}, ConfigError, "retries"),
        ({"to": "r", "every": 5.0, "message": {1, 2}}, InvalidMessage, "not a msgpack value"),
        (
            {"to": "r", "every": 5.0, "message": b"x" * (MAX_RECORD + 1)},
            MessageTooLarge,
            "reference",
        ),
    ],
)
def test_a_bad_schedule_is_refused_with_a_clear_error(
    options: dict[str, Any], error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error, match=fragment):
        Schedule(name="nightly", **options)


def test_the_payload_is_the_message_or_names_the_tick_when_asked() -> None:
    plain = Schedule(name="poll", to="poller", message="tick", every=30.0)
    assert plain.payload(1740794400.0) == "tick"
    stamped = Schedule(name="poll", to="poller", message="tick", every=30.0, with_tick=True)
    assert stamped.payload(1740794400.0) == {
        "schedule": "poll", "tick": "2025-03-01T02:00:00.000Z", "message": "tick",
    }  # fmt: skip


def test_a_stored_schedule_reads_back_equal() -> None:
    schedule = Schedule(name="poll", to="poller", message={"kind": "x"}, every=30.0, start=123.0)
    back = Schedule.from_record("poll", decode(encode(schedule.to_record())))
    assert back == schedule and back.trigger().next_after(123.0) == 153.0
    with pytest.raises(ConfigError, match="not readable"):
        Schedule.from_record("nightly", {"to": "r", "every": 5.0, "colour": "blue"})
