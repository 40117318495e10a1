"""The only door to DuckDB.

``Store`` owns one DuckDB connection. Everything that reads or writes the database goes
through it (``query`` returns a pandas DataFrame). Domain queries live in the modules of
this package (``store.directory``, ...) as plain functions taking a ``Store``.

DuckDB lets one process write a file at a time; a second process that opens it while a
writer holds it gets a lock error. ``Store`` therefore (a) retries opening for
``busy_timeout`` seconds and (b) can ``release()`` its connection between units of work, so
long-running writers (the sync scheduler) leave gaps for readers (reports).

D1: ``Store("ducklake:postgres://user@host:port/db?data=/path")`` (or $MAILOPS_STORE) opens
the same schema on a DuckLake instead -- many writing processes, its catalog in PostgreSQL
(``mailops.store.lake``). The methods below are the same on both backends.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from mailops.errors import StoreBusy, StoreError
from mailops.files import private_umask, tighten
from mailops.store import lake, readers
from mailops.store.literals import inline
from mailops.store.migrations import MIGRATIONS, Migration

if TYPE_CHECKING:
    import pandas as pd

    from mailops.store.blobs import BlobFolder

__all__ = ["Store", "open_store", "default_db_path", "store_exists"]


def default_db_path() -> str:
    """$MAILOPS_STORE (a lake, D1) or $MAILOPS_DB, else ./mailops.duckdb."""
    return os.environ.get("MAILOPS_STORE") or os.environ.get("MAILOPS_DB") or "mailops.duckdb"


def store_exists(spec: str | os.PathLike[str]) -> bool:
    """Is there a store at SPEC? A file must exist; ``:memory:`` and a lake (D1: its
    catalog answers when opened) count as there."""
    spec = str(spec)
    return spec == ":memory:" or lake.is_lake(spec) or Path(spec).exists()


def _is_lock_error(err: Exception) -> bool:
    text = str(err)
    return "lock" in text.lower() and ("Conflicting" in text or "Could not set lock" in text)


class Store:
    """A DuckDB file (or ``":memory:"``) with the mailops schema."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        read_only: bool = False,
        busy_timeout: float = 60.0,
        migrate: bool = True,
    ) -> None:
        self.path = str(path) if path is not None else default_db_path()
        #: D1: the lake this store is on (None: a DuckDB file or ":memory:")
        self.lake = lake.LakeTarget.parse(self.path) if lake.is_lake(self.path) else None
        self.dialect = lake.Dialect() if self.lake is not None else None
        self._write_lock = (
            lake.WriteLock(self.lake, busy_timeout) if self.lake is not None else None
        )
        self.read_only = read_only
        self.busy_timeout = busy_timeout
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._tx_depth = 0
        self._opened_at = 0.0
        self._on_open: list[str] = []  # connection settings, re-applied after release()
        self._blobs: Any = None
        if migrate and not read_only:
            self.migrate()

    # -- connection -----------------------------------------------------------------
    @property
    def backend(self) -> str:
        """``file``, ``memory`` or ``lake`` (D1)."""
        if self.lake is not None:
            return "lake"
        return "memory" if self.path == ":memory:" else "file"

    @property
    def lake_dsn(self) -> str | None:
        """The lake's PostgreSQL catalog (for leases, D1); None off the lake."""
        return self.lake.dsn if self.lake is not None else None

    @property
    def side_path(self) -> str:
        """Base name of the folders that live beside the store (``.blobs``, pending runs):
        the DuckDB file's path, or ``<data path>/mailops`` on a lake."""
        return self.lake.side_path if self.lake is not None else self.path

    @property
    def conn(self) -> duckdb.DuckDBPyConnection:
        if self._conn is None:
            conn = self._open()
            for sql in self._on_open:
                conn.execute(sql)
            self._conn, self._opened_at = conn, time.monotonic()
        return self._conn

    @property
    def blobs(self) -> BlobFolder:
        """The blob folder beside the store (``<path>.blobs``): large raw messages and
        attachments (``mailops.store.blobs``)."""
        if self._blobs is None:
            from mailops.store.blobs import BlobFolder

            self._blobs = BlobFolder.beside(self.side_path)
        return self._blobs  # type: ignore[no-any-return]

    @property
    def in_transaction(self) -> bool:
        return self._tx_depth > 0

    def on_open(self, sql: str) -> None:
        """Run SQL (a connection setting such as ``SET memory_limit``) now and after every
        reopen."""
        self.conn.execute(sql)
        self._on_open.append(sql)

    def yield_to_readers(self, min_hold: float = 2.0, max_hold: float = 30.0) -> bool:
        """Between units of work of a long writer: close the connection when another process
        waits for the file (it announced itself: ``store.readers``) and this one has held it
        MIN_HOLD seconds -- or has held it MAX_HOLD seconds (a waiter that cannot announce).
        DuckDB admits one writing process at a time; waiters retry and get in in the gap.
        Nobody waiting: the file stays open (a close checkpoints, the reopen costs again)."""
        if self._conn is None or self._tx_depth or self.backend != "file":
            return False  # a lake has no file lock to hand over
        held = time.monotonic() - self._opened_at
        if held < min_hold or (held < max_hold and not readers.waiting(self.path)):
            return False
        self.release()
        readers.served(self.path)
        return True

    # How long to sleep between attempts to open a file another process holds: doubling
    # from the first value up to the second (a reader that polls uses a flat, short one).
    retry_delays: tuple[float, float] = (0.02, 0.5)
    busy_guidance = "a sync or report is writing; retry in a moment"

    def _open(self) -> duckdb.DuckDBPyConnection:
        if self.lake is not None:
            conn = lake.connect(self.lake, read_only=self.read_only)
            if self.dialect is not None and not self.read_only:
                self.dialect.load(conn)
            return conn
        if self.path != ":memory:":
            parent = Path(self.path).resolve().parent
            if not parent.is_dir():
                raise StoreError(f"folder for the store does not exist: {parent}")
            # C5: DuckDB creates the file, its WAL and its spill folder with the umask
            private_umask()
            for path in (self.path, f"{self.path}.wal"):
                tighten(path)  # a store an older version created 0644
        deadline = time.monotonic() + self.busy_timeout
        delay, max_delay = self.retry_delays
        while True:
            try:
                return duckdb.connect(self.path, read_only=self.read_only)
            except duckdb.IOException as e:
                if not _is_lock_error(e):
                    raise StoreError(f"cannot open store {self.path}: {e}") from None
                readers.announce(self.path)  # the writer lets go between its units (R2)
                if time.monotonic() >= deadline:
                    raise StoreBusy(
                        f"store {self.path} is locked by another process",
                        guidance=self.busy_guidance,
                    ) from None
                time.sleep(delay + random.random() * delay)
                delay = min(delay * 2, max_delay)
            except duckdb.Error as e:
                raise StoreError(f"cannot open store {self.path}: {e}") from None

    def release(self) -> None:
        """Close the connection (it reopens on next use), letting other processes in."""
        if self._conn is not None and self._tx_depth == 0:
            self._conn.close()
            self._conn = None
        if self._write_lock is not None and self._tx_depth == 0:
            self._write_lock.close()

    close = release

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- statements -----------------------------------------------------------------
    def _run(self, sql: str, params: Sequence[Any] | dict[str, Any] | None) -> Any:
        """Execute one statement; on a lake, in its dialect and (a write outside a
        transaction) in a transaction of its own, under the write lock."""
        if self.dialect is None:
            # parameters as literals where they have one: binding imports pandas
            # (store.literals). A lake's dialect inlines them itself, after its translation.
            text = inline(sql, params)
            return self.conn.execute(sql, params or []) if text is None else self.conn.execute(text)
        if not self._tx_depth and lake.is_write(sql):  # nextval() too: ids need the lock
            with self.transaction():
                result = self.dialect.run(self.conn, sql, params)
                return result if isinstance(result, list) else result.fetchall()
        return self.dialect.run(self.conn, sql, params)

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pd.DataFrame:
        """Run a SELECT and return a DataFrame (pandas is imported on the first one)."""
        result = self._run(sql, params)
        if isinstance(result, list):
            import pandas as pd

            return pd.DataFrame(result)
        return result.df()

    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[tuple]:
        result = self._run(sql, params)
        return result if isinstance(result, list) else result.fetchall()

    def scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        result = self._run(sql, params)
        row = (result[0] if result else None) if isinstance(result, list) else result.fetchone()
        return None if row is None else row[0]

    def setting(self, name: str) -> Any:
        """A DuckDB setting's current value (``memory_limit``, ...)."""
        return self.scalar("SELECT current_setting(?)", [name])

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> None:
        self._run(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        if self.dialect is None:
            self.conn.executemany(sql, rows)
            return
        with self.transaction():
            for row in rows:  # RETURNING and MERGE are per row on the lake
                self.dialect.run(self.conn, sql, row)

    def insert_df(self, table: str, df: pd.DataFrame, *, on_conflict: str = "") -> int:
        """Bulk insert a DataFrame whose columns are a subset of ``table``'s (fast path)."""
        if df is None or df.empty:
            return 0
        name = f"_df_{table}_{id(df)}"
        cols = ", ".join(f'"{c}"' for c in df.columns)
        self.conn.register(name, df)
        try:
            self.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {name} {on_conflict}")
        finally:
            self.conn.unregister(name)
        return len(df)

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """BEGIN ... COMMIT (ROLLBACK on error). Nested calls join the outer transaction."""
        if self._tx_depth:
            self._tx_depth += 1
            try:
                yield self
            finally:
                self._tx_depth -= 1
            return
        conn = self.conn
        if self._write_lock is not None:  # D1: one committer at a time on the lake
            self._write_lock.acquire()
        try:
            if self.dialect is not None and self._write_lock is not None:
                self.dialect.reseed(conn, self._write_lock)
            conn.execute("BEGIN TRANSACTION")
            self._tx_depth = 1
            try:
                yield self
            except BaseException:
                self._tx_depth = 0
                try:
                    conn.execute("ROLLBACK")
                except duckdb.Error:
                    pass
                raise
            else:
                self._tx_depth = 0
                try:
                    conn.execute("COMMIT")
                except duckdb.Error as e:
                    raise StoreError(f"could not commit to {self.path}: {e}") from None
        finally:
            if self._write_lock is not None:
                try:
                    if self.dialect is not None:
                        self.dialect.publish(conn, self._write_lock)
                finally:
                    self._write_lock.release()

    # -- migrations -----------------------------------------------------------------
    def _ensure_migrations_table(self) -> None:
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name VARCHAR PRIMARY KEY,"
            " applied_at TIMESTAMP NOT NULL DEFAULT now()::TIMESTAMP)"
        )

    def applied(self) -> list[str]:
        if self.lake is not None:
            return sorted(lake.applied(self.conn))
        if self.read_only:
            exists = self.scalar(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
            )
            if not exists:
                return []
        else:
            self._ensure_migrations_table()
        return [r[0] for r in self.rows("SELECT name FROM schema_migrations ORDER BY name")]

    def pending(self, migrations: Sequence[Migration] = MIGRATIONS) -> list[Migration]:
        done = set(self.applied())
        return [m for m in migrations if m.name not in done]

    def migrate(self, migrations: Sequence[Migration] = MIGRATIONS) -> list[str]:
        """Apply every pending migration, each in its own transaction; return their names."""
        if self.lake is not None:
            return lake.migrate(self, migrations)
        names = []
        for m in self.pending(migrations):
            try:
                with self.transaction():
                    self.conn.execute(m.sql)
                    if m.run is not None:
                        m.run(self)
                    self.conn.execute("INSERT INTO schema_migrations (name) VALUES (?)", [m.name])
            except StoreError:
                raise
            except Exception as e:  # noqa: BLE001 - SQL or the Python step: nothing applied
                raise StoreError(f"migration {m.name} failed: {e}") from None
            names.append(m.name)
        return names

    def status(self) -> pd.DataFrame:
        import pandas as pd

        applied = (
            self.query("SELECT name, applied_at FROM schema_migrations")
            if self.applied()
            else pd.DataFrame(columns=["name", "applied_at"])
        )
        known = pd.DataFrame({"name": [m.name for m in MIGRATIONS]})
        out = known.merge(applied, on="name", how="outer")
        out["state"] = out["applied_at"].map(lambda v: "pending" if pd.isna(v) else "applied")
        return out[["name", "state", "applied_at"]]


def open_store(path: str | os.PathLike[str] | None = None, **kw: Any) -> Store:
    return Store(path, **kw)
