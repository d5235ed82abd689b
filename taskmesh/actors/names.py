"""Validation of actor names and capabilities.

Names and capabilities end up in etcd keys and log lines, so they are kept to
a small, printable alphabet: letters, digits and ``_ . : - @``, 1-128 long,
starting with a letter, digit or underscore. ``/`` is refused because it
would nest etcd keys.
"""

from __future__ import annotations

import re

from taskmesh.errors import InvalidName

__all__ = ["validate_capability", "validate_name"]

_VALID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,127}")


def validate_name(name: object, *, what: str = "actor name") -> str:
    """Return ``name`` if it is a valid name, else raise :class:`InvalidName`."""
    if not isinstance(name, str):
        raise InvalidName(f"{what} must be a str, not {type(name).__name__}")
    if _VALID.fullmatch(name) is None:
        raise InvalidName(
            f"invalid {what} {name!r}: use 1-128 characters from letters, digits and "
            "'_.:-@', starting with a letter, digit or underscore"
        )
    return name


def validate_capability(capability: object) -> str:
    """Return ``capability`` if valid (same rules as names), else raise."""
    return validate_name(capability, what="capability")
