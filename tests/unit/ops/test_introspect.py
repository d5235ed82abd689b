from __future__ import annotations

import re
from pathlib import Path

import msgpack

import taskmesh
from taskmesh.ops.introspect import Samples, short_repr
from taskmesh.ops.metrics import DEAD_LETTER_REASONS

PACKAGE = Path(taskmesh.__file__).parent


def test_rates_are_messages_per_second_between_samples() -> None:
    samples = Samples(keep=3)
    samples.add(100.0, 0, 0)
    samples.add(101.0, 50, 10)
    samples.add(103.0, 250, 10)
    samples.add(104.0, 250, 14)  # the first sample falls out of the ring
    assert samples.rates() == {"at": [103.0, 104.0], "in": [100.0, 0.0], "out": [0.0, 4.0]}


def test_a_dead_letter_is_shown_as_a_cut_repr_even_if_repr_fails() -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert short_repr({"a": 1}) == "{'a': 1}"
    assert short_repr("x" * 500, limit=20) == "'xxxxxxxxxxxxxxxx..."
    assert short_repr(Broken()) == "<unprintable Broken: RuntimeError>"
    msgpack.packb(short_repr(Broken()))


def test_every_dead_letter_reason_in_the_code_is_pre_created_in_metrics() -> None:
    """A reason added to the runtime must be listed, or its series would
    appear only after the first such letter."""
    found: set[str] = set()
    call = re.compile(r'(?:\.record|dead_letter)\((?:[^()"]|\([^()]*\))*?"([a-z_]+)"', re.S)
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        found |= set(call.findall(text))  # the first literal of a call is its reason
        found |= set(re.findall(r'reason = "([a-z_]+)" if', text))
        found |= set(re.findall(r'else "([a-z_]+)"\n\s+self\.dead_letter', text))
    assert found >= {"actor_not_found", "mailbox_full", "too_large", "no_route"}
    assert found - set(DEAD_LETTER_REASONS) == set()
