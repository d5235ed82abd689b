"""`PostgresStore`: entity state in PostgreSQL, for larger fleets (extra ``postgres``).

Two tables (created if missing, with the prefix ``taskmesh_entity`` by
default), shared by every cluster that uses the database::

    <prefix>_fences (cluster, entity_type, shard) -> token
    <prefix>_state  (cluster, entity_type, entity_id) -> state bytea, token, updated

Fencing: a node that takes a shard first raises the shard's fence to its
token (:meth:`acquire`, one upsert per shard and assignment, not per
activation); a save locks the fence row (``FOR SHARE``) and writes only if
the fence still holds its own token, in one statement. A raise and a save
of the same shard therefore serialize, and once the new owner has raised
the fence, no save of an older owner can land, whatever that owner believes.

Uses psycopg 3 with a small pool of connections (one per worker thread
at most); every method blocks and runs on a store worker thread.
"""

from __future__ import annotations

import contextlib
import queue
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from taskmesh.entities.store import StoreContext
from taskmesh.errors import ConfigError, EntityError, StaleActivation

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresStore"]

MAX_STATE_SIZE = 64 << 20
"""64 MiB: PostgreSQL takes up to 1 GiB per value, but a state that size
would stall its entity's activation."""

_PREFIX = re.compile(r"[a-z_][a-z0-9_]{0,40}")


class PostgresStore:
    """State in PostgreSQL at ``dsn`` (a libpq connection string or URL).

    ``pool_size`` connections at most; ``connect_timeout`` seconds to open
    one. Thread-safe; see the module docstring.
    """

    def __init__(
        self,
        dsn: str,
        *,
        table_prefix: str = "taskmesh_entity",
        max_state_size: int = MAX_STATE_SIZE,
        pool_size: int = 4,
        connect_timeout: float = 5.0,
    ) -> None:
        try:
            import psycopg  # noqa: F401  (the optional extra)
        except ImportError:
            raise ConfigError(
                "PostgresStore needs psycopg: pip install 'taskmesh[postgres]'"
            ) from None
        if _PREFIX.fullmatch(table_prefix) is None:
            raise ConfigError(f"table_prefix must be a lower-case SQL name, got {table_prefix!r}")
        if max_state_size < 1 or pool_size < 1:
            raise ConfigError("max_state_size and pool_size must be positive")
        self.dsn = dsn
        self.max_state_size = max_state_size
        self._fences = f"{table_prefix}_fences"
        self._state = f"{table_prefix}_state"
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue()
        self._opened = 0
        self._lock = threading.Lock()
        self._cluster = ""
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgresStore(tables={self._state!r})"

    # --- connections ------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        import psycopg

        if self._closed:
            raise EntityError("the PostgreSQL store is closed")
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = self._open()
        broken = False
        try:
            yield conn
        except psycopg.OperationalError as error:
            broken = True
            raise EntityError(f"PostgreSQL failed: {error}") from error
        finally:
            if broken or conn.closed or self._closed:
                self._discard(conn)
            else:
                self._idle.put(conn)

    def _open(self) -> psycopg.Connection[Any]:
        import psycopg

        with self._lock:
            full = self._opened >= self._pool_size
            if not full:
                self._opened += 1
        if full:
            try:
                return self._idle.get(timeout=self._connect_timeout * 2)
            except queue.Empty:
                raise EntityError("no PostgreSQL connection came free in time") from None
        try:
            conn: psycopg.Connection[Any] = psycopg.connect(
                self.dsn, autocommit=True, connect_timeout=max(1, round(self._connect_timeout))
            )
        except psycopg.Error as error:
            with self._lock:
                self._opened -= 1
            raise EntityError(f"cannot connect to PostgreSQL: {error}") from error
        return conn

    def _discard(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            self._opened -= 1
        with contextlib.suppress(Exception):  # a broken one may fail to close: gone anyway
            conn.close()

    # --- StateStore -----------------------------------------------------------------

    def bind(self, context: StoreContext) -> None:
        """Remember the cluster and create the tables if they are missing."""
        self._cluster = context.cluster
        with self._connection() as conn, conn.transaction():
            # Two nodes creating the tables at once would collide in the catalog.
            conn.execute("SELECT pg_advisory_xact_lock(7013061701)")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._fences} ("
                " cluster text NOT NULL, entity_type text NOT NULL, shard integer NOT NULL,"
                " token bigint NOT NULL, PRIMARY KEY (cluster, entity_type, shard))"
            )
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._state} ("
                " cluster text NOT NULL, entity_type text NOT NULL, entity_id text NOT NULL,"
                " state bytea NOT NULL, token bigint NOT NULL,"
                " updated timestamptz NOT NULL DEFAULT now(),"
                " PRIMARY KEY (cluster, entity_type, entity_id))"
            )

    def acquire(self, entity_type: str, shard: int, token: int) -> None:
        with self._connection() as conn:
            raised = conn.execute(
                f"INSERT INTO {self._fences} AS f (cluster, entity_type, shard, token)"
                " VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (cluster, entity_type, shard) DO UPDATE SET token = excluded.token"
                " WHERE f.token < excluded.token RETURNING token",
                (self._cluster, entity_type, shard, token),
            ).fetchone()
            if raised is not None:
                return
            row = conn.execute(
                f"SELECT token FROM {self._fences}"
                " WHERE cluster = %s AND entity_type = %s AND shard = %s",
                (self._cluster, entity_type, shard),
            ).fetchone()
        if row is None or row[0] != token:
            raise StaleActivation(
                f"shard {shard} of {entity_type!r} is fenced by a newer owner "
                f"(token {row[0] if row else None} > {token})"
            )

    def load(self, entity_type: str, entity_id: str) -> bytes | None:
        with self._connection() as conn:
            row = conn.execute(
                f"SELECT state FROM {self._state}"
                " WHERE cluster = %s AND entity_type = %s AND entity_id = %s",
                (self._cluster, entity_type, entity_id),
            ).fetchone()
        return bytes(row[0]) if row is not None else None

    def save(
        self, entity_type: str, shard: int, entity_id: str, data: bytes | None, token: int
    ) -> None:
        # One autocommitted statement, so the fence row is share-locked only
        # while the server runs it: a transaction left open by a frozen owner
        # would block the next owner's fence raise until it thawed.
        fence = (
            f"WITH fence AS (SELECT token FROM {self._fences}"
            " WHERE cluster = %s AND entity_type = %s AND shard = %s AND token = %s FOR SHARE)"
        )
        key = (self._cluster, entity_type, entity_id)
        with self._connection() as conn:
            if data is None:
                row = conn.execute(
                    f"{fence}, gone AS (DELETE FROM {self._state}"
                    " WHERE cluster = %s AND entity_type = %s AND entity_id = %s"
                    " AND EXISTS (SELECT 1 FROM fence)) SELECT token FROM fence",
                    (self._cluster, entity_type, shard, token, *key),
                ).fetchone()
            else:
                row = conn.execute(
                    f"{fence}, put AS (INSERT INTO {self._state}"
                    " (cluster, entity_type, entity_id, state, token)"
                    " SELECT %s, %s, %s, %s, token FROM fence"
                    " ON CONFLICT (cluster, entity_type, entity_id) DO UPDATE"
                    " SET state = excluded.state, token = excluded.token, updated = now())"
                    " SELECT token FROM fence",
                    (self._cluster, entity_type, shard, token, *key, data),
                ).fetchone()
        if row is None:
            raise StaleActivation(
                f"not saved: shard {shard} of {entity_type!r} is no longer fenced by token {token}"
            )

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return
            self._discard(conn)
