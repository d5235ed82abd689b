"""Shards: how an entity id maps to a shard, and how entity messages are addressed.

An entity type has a fixed number of shards (128 by default); the id
``dock-3`` lives in shard ``mix(crc32(utf-8 id)) mod shards``. CRC-32 is
stable across processes, machines and Python versions (``hash()`` is not)
and costs ~0.1 us in C; but it is linear, so the low bits of ids that differ
in a digit or two (``dock-0`` ... ``dock-11``) fall into few shards: the
murmur3 finalizer mixes every bit into every other first. The shard count
of a type is part of its identity: every node hosting it must use the same
one, and changing it moves every entity (so it is fixed, like Akka's).

**Targets.** An entity message travels as an ordinary transport message
whose target is not an actor name but ``~TYPE/TOKEN/ID``: ``~`` cannot
start an actor name, so a node's ``ActorSystem.deliver`` misses its name
table and hands the message to the node's entity host (its fallback), on
the I/O thread, without a second hop through a region actor. ``TOKEN`` is
the assignment revision the sender routed by (0 when it had none): a node
that has not yet seen that revision holds the message until its own view
catches up instead of bouncing it back, so forwarding never loops.
``~~TYPE/TOKEN/SHARD`` is a barrier (see :mod:`taskmesh.entities.router`),
``~?`` asks a node for its entity figures (``taskmesh entities``).
"""

from __future__ import annotations

from typing import Final
from zlib import crc32

from taskmesh.actors.names import validate_name
from taskmesh.errors import ConfigError, InvalidName

__all__ = [
    "BARRIER",
    "DEFAULT_SHARDS",
    "MAX_ID_LENGTH",
    "MAX_SHARDS",
    "STATS",
    "TARGET",
    "barrier_target",
    "entity_target",
    "parse_barrier",
    "parse_target",
    "shard_of",
    "validate_entity_id",
    "validate_entity_type",
    "validate_shards",
]

DEFAULT_SHARDS: Final = 128
MAX_SHARDS: Final = 4096
MAX_ID_LENGTH: Final = 256
"""Characters in an entity id (any Unicode string, encodable as UTF-8)."""

TARGET: Final = "~"
BARRIER: Final = "~~"
STATS: Final = "~?"


def shard_of(entity_id: str, shards: int) -> int:
    """The shard of ``entity_id`` among ``shards``."""
    h = crc32(entity_id.encode())
    h = ((h ^ (h >> 16)) * 0x85EBCA6B) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 0xC2B2AE35) & 0xFFFFFFFF
    return (h ^ (h >> 16)) % shards


def validate_entity_type(entity_type: object) -> str:
    """An entity type is named like an actor (``device``, ``order.v2``)."""
    return validate_name(entity_type, what="entity type")


def validate_entity_id(entity_id: object) -> str:
    """Return ``entity_id`` if it is a str of 1-256 characters that encodes
    as UTF-8; raise :class:`InvalidName` otherwise."""
    if not isinstance(entity_id, str):
        raise InvalidName(f"an entity id must be a str, not {type(entity_id).__name__}")
    if not 0 < len(entity_id) <= MAX_ID_LENGTH:
        raise InvalidName(f"an entity id must have 1-{MAX_ID_LENGTH} characters, got {entity_id!r}")
    try:
        entity_id.encode()
    except UnicodeEncodeError:
        raise InvalidName(f"entity id {entity_id!r} cannot be encoded as UTF-8") from None
    return entity_id


def validate_shards(shards: object, what: str = "shards") -> int:
    """A shard count: an int from 1 to 4096."""
    if not isinstance(shards, int) or isinstance(shards, bool) or not 0 < shards <= MAX_SHARDS:
        raise ConfigError(f"{what} must be an int from 1 to {MAX_SHARDS}, got {shards!r}")
    return shards


def entity_target(entity_type: str, token: int, entity_id: str) -> str:
    """The transport target of a message to one entity."""
    return f"~{entity_type}/{token}/{entity_id}"


def barrier_target(entity_type: str, token: int, shard: int) -> str:
    """The transport target of a barrier for one shard."""
    return f"~~{entity_type}/{token}/{shard}"


def parse_target(name: str) -> tuple[str, int, str] | None:
    """``(type, token, id)`` of an entity target, or None if malformed."""
    parts = name[1:].split("/", 2)
    if len(parts) != 3 or not parts[2] or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1]), parts[2]


def parse_barrier(name: str) -> tuple[str, int, int] | None:
    """``(type, token, shard)`` of a barrier target, or None if malformed."""
    parts = name[2:].split("/")
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return parts[0], int(parts[1]), int(parts[2])
