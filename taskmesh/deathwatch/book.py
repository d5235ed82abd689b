"""The death watches of one node, kept outside its ``_deathwatch`` actor so
that a restart of that actor loses none (see `taskmesh.deathwatch`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from taskmesh.actors.messages import Terminated

if TYPE_CHECKING:
    from taskmesh.actors.cell import Cell

__all__ = ["RemoteWatch", "WatchBook"]


@dataclass(eq=False)
class RemoteWatch:
    """The watches here of one actor on another node."""

    node: str
    name: str
    incarnation: str
    cells: set[Cell] = field(default_factory=set)
    registered: bool = False
    attempt: int = 0
    retry_at: float = 0.0
    suspect_since: float | None = None


class WatchBook:
    """The death watches of one node, both parts (see the module docstring).

    ``remote`` (this node watching), ``by_watcher`` (the same, by watcher)
    and ``pending`` (watches not yet handled by the actor) are guarded by
    ``lock`` and touched by the actor's thread and, for ``unwatch``, by the
    watcher's; ``watched_by`` (other nodes watching actors here) by the
    actor's thread only.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.remote: dict[tuple[str, str], RemoteWatch] = {}
        self.by_watcher: dict[str, dict[Cell, set[tuple[str, str]]]] = {}
        self.pending: dict[tuple[Cell, str], object] = {}
        self.watched_by: dict[str, set[str]] = {}

    def add(self, entry: RemoteWatch, cell: Cell) -> None:
        """Lock held."""
        entry.cells.add(cell)
        self.by_watcher.setdefault(cell.name, {}).setdefault(cell, set()).add(
            (entry.node, entry.name)
        )

    def discard(self, key: tuple[str, str], cell: Cell) -> RemoteWatch | None:
        """Remove ``cell``'s watch of ``key``; return the entry if nobody
        here watches it any more (lock held)."""
        entry = self.remote.get(key)
        cells = self.by_watcher.get(cell.name)
        if cells is not None and cell in cells:
            cells[cell].discard(key)
            if not cells[cell]:
                del cells[cell]
                if not cells:
                    del self.by_watcher[cell.name]
        if entry is None:
            return None
        entry.cells.discard(cell)
        if entry.cells:
            return None
        del self.remote[key]
        return entry

    def end(self, key: tuple[str, str], reason: str) -> RemoteWatch | None:
        """The watched actor ended: deliver Terminated to its watchers here
        (under the lock, so that an ``unwatch`` that returned first wins)."""
        with self.lock:
            entry = self.remote.pop(key, None)
            if entry is None:
                return None
            for cell in entry.cells:
                cells = self.by_watcher.get(cell.name)
                if cells is not None and cell in cells:
                    cells[cell].discard(key)
                    if not cells[cell]:
                        del cells[cell]
                        if not cells:
                            del self.by_watcher[cell.name]
                cell.deliver_internal(Terminated(entry.name, reason))
            return entry
