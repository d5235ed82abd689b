"""The values our etcd adapter speaks in: keys, transaction guards and operations,
results. Plain dataclasses, so that no etcd3 type leaks out of the adapter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Compare", "Delete", "Get", "KeyValue", "Op", "Put", "Status", "TxnResult"]


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key as etcd stores it."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


@dataclass(frozen=True, slots=True)
class Compare:
    """A transaction guard: ``target`` of ``key`` compared with ``value``.

    ``target`` is ``create`` (create revision, 0 when absent), ``mod``,
    ``version`` or ``value``.
    """

    key: str
    target: Literal["create", "mod", "version", "value"]
    op: Literal["==", "!=", "<", ">"]
    value: int | bytes


@dataclass(frozen=True, slots=True)
class Put:
    """Transaction operation: put ``value`` at ``key`` (under ``lease``)."""

    key: str
    value: bytes
    lease: int | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    """Transaction operation: delete ``key`` (every key under it if ``prefix``)."""

    key: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Get:
    """Transaction operation: read ``key``."""

    key: str


Op = Put | Delete | Get


@dataclass(frozen=True, slots=True)
class Status:
    """The answering member's store revision and database file size in bytes.

    ``db_size`` is what etcd's quota counts. Compaction frees pages for
    reuse, so the file stops growing; only a defragmentation shrinks it.
    """

    revision: int
    db_size: int


@dataclass(frozen=True, slots=True)
class TxnResult:
    """Whether the guards held, and the keys read by `Get` operations."""

    succeeded: bool
    revision: int
    gets: list[list[KeyValue]]
