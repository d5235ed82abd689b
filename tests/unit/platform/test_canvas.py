"""The workflow canvas: building, the wire form, and how results flow."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

import taskmesh
from taskmesh.errors import ConfigError
from taskmesh.platform.canvas import compose, from_record, to_record
from taskmesh.platform.progress import Progress, StepResult


def ok(value: Any) -> StepResult:
    return StepResult(True, value)


def failed(kind: str = "ValueError") -> StepResult:
    return StepResult(False, error={"type": kind, "message": "boom"})


def test_a_step_gets_its_input_or_its_message_merged_or_its_message_alone() -> None:
    assert compose(None, {"path": "/a"}) == {"path": "/a"}
    assert compose({"bucket": "b", "path": "mine"}, {"path": "/a", "size": 3}) == {
        "bucket": "b", "path": "mine", "size": 3,
    }  # fmt: skip
    assert compose("tick", {"path": "/a"}) == "tick"
    assert compose({"k": 1}, [1, 2]) == {"k": 1}
    assert compose({"k": 1}, None) == {"k": 1}


def test_the_wire_form_round_trips_through_msgpack() -> None:
    handler = taskmesh.step("alert", {"to": "ops"})
    workflow = taskmesh.chain(
        taskmesh.step("fetch", {"url": "u"}, timeout=5.0, retries=1),
        taskmesh.chord(
            [taskmesh.step("resize", {"img": i}, capability=True) for i in range(3)],
            taskmesh.step("merge", capability=True),
        ),
        taskmesh.group(taskmesh.step("a"), taskmesh.step("b", b"\x00raw")),
        on_error=handler,
    )
    wire = msgpack.unpackb(msgpack.packb(to_record(workflow)), raw=False)
    assert from_record(wire) == workflow


@pytest.mark.parametrize(
    ("record", "fragment"),
    [
        ("step", "must be a map"),
        ({"nothing": 1}, "none of step"),
        ({"step": "bad name!"}, "not valid"),
        ({"group": []}, "at least one step"),
        ({"chain": "x"}, "list of parts"),
        ({"chord": {"step": "a"}, "body": {"step": "b"}}, "header must be a group"),
        ({"step": "a", "timeout": -1}, "timeout must be > 0"),
        ({"step": "a", "on_error": {"group": [{"step": "b"}]}}, "on_error must be a step"),
    ],
)
def test_a_malformed_workflow_is_a_clear_config_error(record: Any, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        from_record(record)


def test_empty_groups_and_bad_parts_are_refused_when_built() -> None:
    with pytest.raises(ConfigError, match="at least one step"):
        taskmesh.chord([], taskmesh.step("merge"))
    with pytest.raises(ConfigError, match="holds steps"):
        taskmesh.chain(taskmesh.step("a"), "b")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="on_error must be a step"):
        taskmesh.group(taskmesh.step("a"), on_error=taskmesh.group(taskmesh.step("b")))  # type: ignore[arg-type]


def test_a_chain_feeds_each_result_to_the_next_step() -> None:
    progress = Progress.of(
        taskmesh.chain(
            taskmesh.step("fetch", {"url": "u"}),
            taskmesh.step("store", {"bucket": "b"}),
            taskmesh.step("notify", "done"),
        )
    )
    assert progress.evaluate({}).ready == ((0, {"url": "u"}),)
    assert progress.evaluate({0: ok({"path": "/p"})}).ready == ((1, {"path": "/p", "bucket": "b"}),)
    assert progress.evaluate({0: ok({}), 1: ok({"stored": True})}).ready == ((2, "done"),)
    finished = progress.evaluate({0: ok({}), 1: ok({}), 2: ok("sent")})
    assert (finished.done, finished.value) == (True, "sent")


def test_a_chord_body_is_ready_exactly_when_the_last_member_is_done() -> None:
    progress = Progress.of(
        taskmesh.chord(
            [taskmesh.step("resize", {"img": i}) for i in range(3)], taskmesh.step("merge")
        )
    )
    assert [number for number, _ in progress.evaluate({}).ready] == [0, 1, 2]
    two = progress.evaluate({0: ok("a"), 2: ok("c")})
    assert two.ready == ((1, {"img": 1}),), "the body waits for the last member"
    three = progress.evaluate({0: ok("a"), 1: ok("b"), 2: ok("c")})
    assert three.ready == ((3, ["a", "b", "c"]),), "then gets every result, in order"
    done = progress.evaluate({0: ok("a"), 1: ok("b"), 2: ok("c"), 3: ok("abc")})
    assert (done.done, done.value) == (True, "abc")


def test_a_failed_step_fails_the_workflow_and_finds_the_closest_handler() -> None:
    inner = taskmesh.step("inner-handler")
    outer = taskmesh.step("outer-handler")
    progress = Progress.of(
        taskmesh.chain(
            taskmesh.step("a"),
            taskmesh.group(taskmesh.step("b"), taskmesh.step("c", on_error=inner)),
            on_error=outer,
        )
    )
    names = [s.target for s in progress.steps]
    assert names == ["a", "b", "c", "inner-handler", "outer-handler"]
    outcome = progress.evaluate({0: ok(1), 1: failed()})
    assert outcome.failed == 1 and not outcome.ready
    assert progress.handler_for(1) == 4, "b has none of its own: the chain's"
    assert progress.handler_for(2) == 3, "c's own comes first"
    assert progress.handler_for(0) == 4
    assert progress.handler_for(3) is None, "a failing handler has no handler"
    assert progress.is_handler(3) and not progress.is_handler(2)


def test_step_numbers_are_stable_even_when_one_step_object_is_reused() -> None:
    again = taskmesh.step("same")
    progress = Progress.of(taskmesh.chain(again, again))
    assert progress.evaluate({0: ok("x")}).ready == ((1, "x"),)
    assert Progress.of(taskmesh.chain(again, again)).steps == progress.steps
