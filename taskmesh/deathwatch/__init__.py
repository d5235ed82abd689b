"""Death watch across nodes: ``self.watch(self.node.ref("worker-7"))``.

Local death watch lives in the actor layer (a cell tells its watchers when
it ends). This module carries it over the mesh, with one built-in actor on
every node, ``_deathwatch`` (a node-local name), that plays two parts:

- **for a watcher here**: it finds the node that holds the name, asks that
  node's ``_deathwatch`` to watch the actor, and delivers
  :class:`~taskmesh.Terminated` to the watcher when told that the actor
  ended, or when the node is gone: it left the cluster (stopped, or its
  lease expired after a crash: ``"node_left"``), it came back as a new
  process, or the mesh suspected it for longer than ``unreachable_after``
  (``"unreachable"``) while etcd still saw it;
- **for a target here**: it watches the actor locally (the actor layer's
  own death watch) and tells every watching node's ``_deathwatch`` when it
  ends, with the local reason (``"stopped"``, ``"failed"``).

Semantics follow local death watch: a watch is on the actor behind the
name when the watch is made, not on the name; a restart (in place) is not
an end; the watch survives the watcher's restarts and ends with the
watcher's cell (its node is then told to forget it); ``unwatch`` returns
once no Terminated for that watch can be delivered any more. The watches
of a node live in its memory: a node that restarts has none.

Why a module of its own at the top: it joins the actor layer (local
watch), the cluster (membership, suspicion) and the mesh, as the locator
and the registrar do; it is part of the actor model, not of the task
platform.

The tables are in a `WatchBook` (``book.py``), outside the actor instance
(``watcher.py``), so that a restart of ``_deathwatch`` loses nothing; its
lock makes ``unwatch`` (in the watcher's thread) exact.
"""

from __future__ import annotations

from .book import RemoteWatch as RemoteWatch
from .book import WatchBook as WatchBook
from .watcher import CHECK as CHECK
from .watcher import UNREACHABLE_AFTER as UNREACHABLE_AFTER
from .watcher import WATCH_ACTOR as WATCH_ACTOR
from .watcher import DeathWatch as DeathWatch
from .watcher import DeathWatcher as DeathWatcher
from .watcher import WatchContext as WatchContext
from .watcher import spawn_death_watch as spawn_death_watch
from .watcher import unwatch_named as unwatch_named
from .watcher import watch_named as watch_named

__all__ = [
    "CHECK",
    "UNREACHABLE_AFTER",
    "WATCH_ACTOR",
    "DeathWatch",
    "DeathWatcher",
    "RemoteWatch",
    "WatchBook",
    "WatchContext",
    "spawn_death_watch",
    "unwatch_named",
    "watch_named",
]
