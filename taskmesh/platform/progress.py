"""How far a workflow has got: a pure function of its steps' results.

`Progress.of(workflow)` numbers every step (preorder, each part's
``on_error`` after its children). `Progress.evaluate(results)` walks the
tree with the results known so far and says whether the workflow is done,
has failed, or which steps can run now and with which message. The
coordinator calls it whenever a result arrives: a chord's body becomes
ready in the very call that records the header's last result, so nothing
polls. Step numbers are stable for a definition, which is what makes a
step's idempotency key (``<workflow>:<number>``) the same on the node that
adopts a workflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from taskmesh.errors import ConfigError

from .canvas import MAX_STEPS, Chain, Chord, Group, Step, Workflow, compose

__all__ = ["Outcome", "Progress", "StepResult"]


@dataclass(frozen=True, slots=True)
class StepResult:
    """A step's answer (``ok``) or its error (``{"type", "message", ...}``)."""

    ok: bool
    value: Any = None
    error: dict[str, Any] | None = None

    def to_record(self) -> dict[str, Any]:
        return {"ok": self.value} if self.ok else {"error": self.error}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> StepResult:
        if "error" in record:
            error = record["error"]
            return cls(False, error=error if isinstance(error, dict) else {"type": "Error"})
        return cls(True, record.get("ok"))


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where a workflow stands. ``ready``: (step number, message) pairs to
    ask now; ``failed``: the number of the failed step."""

    done: bool = False
    value: Any = None
    failed: int | None = None
    ready: tuple[tuple[int, Any], ...] = ()


@dataclass(eq=False, slots=True)
class _Node:
    kind: str  # "step", "chain" or "group"
    step: Step | None = None
    number: int = -1
    parts: list[_Node] = field(default_factory=list)
    handler: _Node | None = None
    parent: _Node | None = None


class Progress:
    """One workflow's numbered steps (see the module docstring)."""

    def __init__(self, workflow: Workflow) -> None:
        self.steps: list[Step] = []
        self._nodes: list[_Node] = []
        self.root = self._build(workflow, None)
        if len(self.steps) > MAX_STEPS:
            raise ConfigError(f"a workflow may hold at most {MAX_STEPS} steps")

    @classmethod
    def of(cls, workflow: Workflow) -> Progress:
        return cls(workflow)

    def _build(self, part: Workflow, parent: _Node | None) -> _Node:
        if isinstance(part, Step):
            node = _Node("step", step=part, number=len(self.steps), parent=parent)
            self.steps.append(part)
            self._nodes.append(node)
        elif isinstance(part, Chord):  # a chord is a chain of its group and its body
            node = _Node("chain", parent=parent)
            node.parts = [self._build(part.header, node), self._build(part.body, node)]
        else:
            node = _Node("chain" if isinstance(part, Chain) else "group", parent=parent)
            assert isinstance(part, Chain | Group)
            node.parts = [self._build(child, node) for child in part.parts]
        if part.on_error is not None:
            node.handler = self._build(part.on_error, node)
        return node

    def handler_for(self, number: int) -> int | None:
        """The number of the ``on_error`` step closest to step ``number``
        (its own first, then outward); None if there is none. A failing
        handler has none: its failure ends the workflow."""
        node: _Node | None = self._nodes[number]
        if self.is_handler(number):
            return None
        while node is not None:
            if node.handler is not None:
                return node.handler.number
            node = node.parent
        return None

    def is_handler(self, number: int) -> bool:
        node = self._nodes[number]
        return node.parent is not None and node.parent.handler is node

    def evaluate(self, results: dict[int, StepResult]) -> Outcome:
        """Where the workflow stands given ``results`` (by step number)."""
        return self._eval(self.root, None, results)

    def _eval(self, node: _Node, given: Any, results: dict[int, StepResult]) -> Outcome:
        if node.kind == "step":
            assert node.step is not None
            result = results.get(node.number)
            if result is None:
                return Outcome(ready=((node.number, compose(node.step.message, given)),))
            if not result.ok:
                return Outcome(failed=node.number)
            return Outcome(done=True, value=result.value)
        if node.kind == "chain":
            current = given
            for part in node.parts:
                outcome = self._eval(part, current, results)
                if not outcome.done:
                    return outcome
                current = outcome.value
            return Outcome(done=True, value=current)
        ready: list[tuple[int, Any]] = []
        values = []
        for part in node.parts:
            outcome = self._eval(part, given, results)
            if outcome.failed is not None:
                return outcome  # fail fast: the group has failed
            ready.extend(outcome.ready)
            values.append(outcome.value)
        if ready:
            return Outcome(ready=tuple(ready))
        return Outcome(done=True, value=values)
