"""Workflows built from asks: `step`, `chain`, `group`, `chord` (Celery's canvas).

- ``step(target, message=None, capability=False)`` asks one actor (by name,
  or a holder of a capability) and its answer is the step's result.
- ``chain(a, b, c)`` runs one after another; each result feeds the next.
- ``group(a, b, c)`` runs side by side; its result is the list of results,
  in order.
- ``chord(header, body)`` runs the group ``header``, then ``body`` with the
  list of its results, as soon as the last one arrives.

**How a result becomes the next message.** Each step (and each member of a
group) has an *input*: the previous result in a chain, the group's input in
a group, ``None`` for the first step.

- ``message=None``: the step is asked with its input, as it is.
- the message and the input are both dicts: they are merged, and the
  step's own keys win (``{**input, **message}``).
- otherwise the step is asked with its own message, and the input is not
  passed (Celery's immutable signature).

**Failure.** A step whose actor raises (or that is not answered within its
``timeout`` after ``retries``) fails the workflow with that error. The
``on_error`` step closest to the failing step (its own, else its chain's or
group's, outward) is then asked with ``{"workflow", "failed", "error"}``
(merged with its own dict message, as above), and the workflow ends
failed. Other members of a group still running are not waited for.

A workflow is a tree of these values; `to_record` turns it into msgpack
values for the coordinator, `from_record` reads one back (validating).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from taskmesh.actors.names import validate_capability, validate_name
from taskmesh.errors import ConfigError

__all__ = [
    "MAX_STEPS",
    "Chain",
    "Chord",
    "Group",
    "Step",
    "Workflow",
    "chain",
    "chord",
    "compose",
    "from_record",
    "group",
    "step",
    "to_record",
]

MAX_STEPS = 1_000
"""Steps one workflow may hold (handlers included): each result is an etcd
write, and the coordinator re-walks the tree at every result."""

_MAX_DEPTH = 32


@dataclass(frozen=True)
class Step:
    """Ask ``target`` (see the module docstring). ``timeout`` bounds the
    step, retries included; ``retries`` re-sends after a lost node."""

    target: str
    message: Any = None
    capability: bool = False
    timeout: float = 30.0
    retries: int = 3
    on_error: Step | None = None

    def __post_init__(self) -> None:
        (validate_capability if self.capability else validate_name)(self.target)
        if not isinstance(self.timeout, int | float) or not self.timeout > 0:
            raise ConfigError(f"step timeout must be > 0 s, got {self.timeout!r}")
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigError(f"step retries must be an int >= 0, got {self.retries!r}")
        _check_handler(self.on_error)


@dataclass(frozen=True)
class Chain:
    """Run ``parts`` one after another; the result is the last one's."""

    parts: tuple[Workflow, ...]
    on_error: Step | None = None

    def __post_init__(self) -> None:
        _check_parts(self.parts, "chain")
        _check_handler(self.on_error)


@dataclass(frozen=True)
class Group:
    """Run ``parts`` side by side; the result is the list of their results."""

    parts: tuple[Workflow, ...]
    on_error: Step | None = None

    def __post_init__(self) -> None:
        _check_parts(self.parts, "group")
        _check_handler(self.on_error)


@dataclass(frozen=True)
class Chord:
    """Run ``header`` (a group), then ``body`` with the list of its results."""

    header: Group
    body: Workflow
    on_error: Step | None = None

    def __post_init__(self) -> None:
        _check_parts((self.body,), "chord body")
        _check_handler(self.on_error)


Workflow = Step | Chain | Group | Chord


def step(
    target: str,
    message: Any = None,
    *,
    capability: bool = False,
    timeout: float = 30.0,
    retries: int = 3,
    on_error: Step | None = None,
) -> Step:
    """A step that asks ``target`` (a capability with ``capability=True``)."""
    return Step(target, message, capability, timeout, retries, on_error)


def chain(*parts: Workflow | Iterable[Workflow], on_error: Step | None = None) -> Chain:
    """Run ``parts`` in order (given as arguments or as one iterable)."""
    return Chain(_flatten(parts), on_error)


def group(*parts: Workflow | Iterable[Workflow], on_error: Step | None = None) -> Group:
    """Run ``parts`` side by side (given as arguments or as one iterable)."""
    return Group(_flatten(parts), on_error)


def chord(
    header: Group | Iterable[Workflow], body: Workflow, *, on_error: Step | None = None
) -> Chord:
    """Run the group ``header``, then ``body`` with the list of its results."""
    return Chord(header if isinstance(header, Group) else group(header), body, on_error)


def _flatten(parts: Sequence[Workflow | Iterable[Workflow]]) -> tuple[Workflow, ...]:
    if len(parts) == 1 and not isinstance(parts[0], Step | Chain | Group | Chord):
        return tuple(parts[0])
    return tuple(parts)  # type: ignore[arg-type]


def _check_parts(parts: Sequence[Any], what: str) -> None:
    if not parts:
        raise ConfigError(f"a {what} needs at least one step")
    for part in parts:
        if not isinstance(part, Step | Chain | Group | Chord):
            raise ConfigError(f"a {what} holds steps, chains, groups and chords, not {part!r}")


def _check_handler(handler: Any) -> None:
    if handler is not None and not isinstance(handler, Step):
        raise ConfigError(f"on_error must be a step(...), not {handler!r}")


def compose(message: Any, given: Any) -> Any:
    """The message a step is asked with, from its own ``message`` and its
    input ``given`` (the rule in the module docstring)."""
    if message is None:
        return given
    if isinstance(message, dict) and isinstance(given, dict):
        return {**given, **message}
    return message


# --- the wire form --------------------------------------------------------


def to_record(workflow: Workflow) -> dict[str, Any]:
    """The workflow as msgpack values (what the coordinator stores)."""
    handler = {"on_error": to_record(workflow.on_error)} if workflow.on_error else {}
    if isinstance(workflow, Step):
        return {
            "step": workflow.target, "message": workflow.message,
            "capability": workflow.capability, "timeout": workflow.timeout,
            "retries": workflow.retries, **handler,
        }  # fmt: skip
    if isinstance(workflow, Chord):
        return {"chord": to_record(workflow.header), "body": to_record(workflow.body), **handler}
    kind = "chain" if isinstance(workflow, Chain) else "group"
    return {kind: [to_record(part) for part in workflow.parts], **handler}


def from_record(record: Any, *, _depth: int = 0) -> Workflow:
    """Read a workflow back from its wire form; `ConfigError` if malformed."""
    if _depth > _MAX_DEPTH:
        raise ConfigError(f"a workflow may nest at most {_MAX_DEPTH} levels deep")
    if not isinstance(record, dict):
        raise ConfigError(f"a workflow part must be a map, not {type(record).__name__}")
    handler_record = record.get("on_error")
    handler = None
    if handler_record is not None:
        parsed = from_record(handler_record, _depth=_depth + 1)
        if not isinstance(parsed, Step):
            raise ConfigError("on_error must be a step")
        handler = parsed
    try:
        if "step" in record:
            return Step(
                record["step"], record.get("message"), bool(record.get("capability", False)),
                record.get("timeout", 30.0), record.get("retries", 3), handler,
            )  # fmt: skip
        if "chord" in record:
            header = from_record(record["chord"], _depth=_depth + 1)
            if not isinstance(header, Group):
                raise ConfigError("a chord's header must be a group")
            return Chord(header, from_record(record.get("body"), _depth=_depth + 1), handler)
        for kind, cls in (("chain", Chain), ("group", Group)):
            if kind in record:
                parts = record[kind]
                if not isinstance(parts, list):
                    raise ConfigError(f"a {kind} must hold a list of parts")
                return cls(tuple(from_record(p, _depth=_depth + 1) for p in parts), handler)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"workflow part {record!r:.200} is not valid: {error}") from None
    raise ConfigError(f"workflow part {record!r:.200} is none of step, chain, group, chord")
