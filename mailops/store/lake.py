"""D1: the store on a DuckLake -- catalog in PostgreSQL, data in Parquet files.

Past one machine many sync workers write one store. A DuckDB file takes one writing
process; a DuckLake takes many (each commit is a row in the PostgreSQL catalog). The store
door (``mailops.store.Store``) hides the difference: ``Store("ducklake:postgres://...")``
attaches the lake as the session's default catalog, so every query of the package, the
notebooks and the CLI reads the same table names on both backends.

What DuckLake lacks, and what stands in for it here:

* **No PRIMARY KEY / UNIQUE / indexes.** The schema is the one the migrations build: they
  are applied to an in-memory DuckDB, and its tables, columns, defaults and views are
  created in the lake (``migrate``). The keys the migrations declare are kept in
  ``lake_keys``; an ``INSERT ... ON CONFLICT`` of the package becomes a ``MERGE INTO`` on
  those keys (``translate``), so a retried batch stores nothing twice.
* **No sequences.** Each writing session has temporary sequences of the same names, and
  the column defaults (``nextval('activity_seq')``) resolve to them. Every id is taken
  under the write lock: before, each sequence moves past the highest id any session took
  (``lake_ids``, a PostgreSQL table); after, the session records the ids it took there
  (``Dialect.reseed`` / ``publish``) -- ids already handed out but not yet written (a sync
  numbers its runs first) included. So ids grow in the order they are taken, across
  workers, as on one file ("the latest run" is the largest id). ``INSERT ... RETURNING id``
  (not supported for lake tables) takes its id from that sequence first.
* **Optimistic commits.** Two transactions inserting the same new message (two mailboxes
  that both received it) would both succeed, and a MERGE cannot see the other's row. Write
  transactions therefore take a PostgreSQL advisory lock (``WriteLock``): IMAP work and
  parsing run in parallel in every worker; only the commits of the store are serialized.
  A killed writer's lock goes with its connection.
"""

from __future__ import annotations

import glob
import os
import re
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import duckdb

from mailops.errors import StoreBusy, StoreError
from mailops.store.literals import inline

if TYPE_CHECKING:
    from mailops.store import Store
    from mailops.store.migrations import Migration

SCHEME = "ducklake:"
ALIAS = "lake"
DATA_ENV = "MAILOPS_LAKE_DATA"
EXTRA_HINT = "the lake store needs DuckDB's extensions: pip install 'mailops[ducklake]'"
#: the advisory lock every write transaction on the lake holds (any 64-bit number; named)
LOCK_KEY = zlib.crc32(b"mailops.lake.write")


def is_lake(spec: str | os.PathLike[str] | None) -> bool:
    return isinstance(spec, str) and spec.startswith(SCHEME)


@dataclass(frozen=True)
class LakeTarget:
    """Where a lake lives: its PostgreSQL catalog and its data folder."""

    host: str
    port: int
    dbname: str
    user: str
    data_path: str

    @classmethod
    def parse(cls, spec: str, data_path: str | None = None) -> LakeTarget:
        """``ducklake:postgres://USER@HOST:PORT/DB[?data=/path]``; the data path may also
        come from $MAILOPS_LAKE_DATA. A password in the address is refused: it would reach
        logs and notebook environments; libpq reads it from PGPASSWORD or ~/.pgpass."""
        url = spec[len(SCHEME) :] if spec.startswith(SCHEME) else spec
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql"):
            raise StoreError(
                f"store {cls.redact(spec)}: expected ducklake:postgres://user@host:port/db"
            )
        if parts.password:
            raise StoreError(
                "a password in the lake address is refused (it would reach logs); "
                "give it in PGPASSWORD or ~/.pgpass"
            )
        query = parse_qs(parts.query)
        data = (query.get("data") or [""])[0] or data_path or os.environ.get(DATA_ENV)
        if not data:
            raise StoreError(
                f"store {cls.redact(spec)}: no data folder (add ?data=/path or set {DATA_ENV})"
            )
        dbname = unquote(parts.path.lstrip("/")) or "postgres"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            dbname=dbname,
            user=unquote(parts.username or "postgres"),
            data_path=str(Path(data).resolve()),
        )

    @staticmethod
    def redact(spec: str) -> str:
        return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", spec)

    @property
    def dsn(self) -> str:
        """The catalog as a PostgreSQL URL (for psycopg; no password)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"

    @property
    def conninfo(self) -> str:
        return f"dbname={self.dbname} host={self.host} port={self.port} user={self.user}"

    @property
    def side_path(self) -> str:
        """Base of the folders beside the store (blobs, pending runs) -- in the data path,
        which every worker shares like the Parquet files."""
        return os.path.join(self.data_path, "mailops")


def _extension_file(package: str) -> str:
    try:
        pkg = import_module(package)
    except ImportError:
        raise StoreError(EXTRA_HINT) from None
    base = os.path.dirname(pkg.__file__ or "")
    found = glob.glob(os.path.join(base, "extensions", "*", "*.duckdb_extension"))
    if not found:
        raise StoreError(f"{EXTRA_HINT} ({package} has no extension file)")
    return found[0]


def connect(target: LakeTarget, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB session whose default catalog is the lake (offline: the extensions come
    from their PyPI packages, never from INSTALL)."""
    Path(target.data_path).mkdir(parents=True, exist_ok=True)
    conn = duckdb.connect()
    try:
        for package in ("duckdb_extension_postgres_scanner", "duckdb_extension_ducklake"):
            conn.execute(f"LOAD '{_extension_file(package)}'")
        options = f"DATA_PATH '{_quote(target.data_path.rstrip('/') + '/')}'"
        if read_only:
            options += ", READ_ONLY"
        conn.execute(f"ATTACH 'ducklake:postgres:{_quote(target.conninfo)}' AS {ALIAS} ({options})")
        conn.execute(f"USE {ALIAS}")
    except duckdb.Error as e:
        conn.close()
        first = str(e).splitlines()[0]
        raise StoreError(f"cannot open lake {target.dsn}: {first}") from None
    return conn


def _quote(text: str) -> str:
    return text.replace("'", "''")


class WriteLock:
    """The lake's write lock: a PostgreSQL session advisory lock on the catalog database.
    PostgreSQL drops it with the holder's connection, so a killed worker frees it at once."""

    def __init__(self, target: LakeTarget, timeout: float) -> None:
        self.target = target
        self.timeout = timeout
        self._pg: Any = None
        self._ids_table = False
        self._since = 0.0
        #: how often this session took the lock, how long it waited and held it (the
        #: lake's one shared resource: bench/lake_bench.py reads these)
        self.acquired = 0
        self.waited_s = 0.0
        self.held_s = 0.0

    def _conn(self) -> Any:
        if self._pg is None or self._pg.closed:
            try:
                import psycopg
            except ImportError:
                raise StoreError(f"{EXTRA_HINT} (psycopg)") from None
            try:
                self._pg = psycopg.connect(self.target.dsn, autocommit=True, connect_timeout=10)
            except psycopg.Error as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise StoreError(
                    f"cannot reach the lake catalog {self.target.dsn}: {first}"
                ) from None
        return self._pg

    def acquire(self) -> None:
        import psycopg

        pg = self._conn()
        start = time.perf_counter()
        try:
            pg.execute(f"SET lock_timeout = '{int(self.timeout * 1000)}ms'")
            pg.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
            self._since = time.perf_counter()
            self.acquired += 1
            self.waited_s += self._since - start
            if not self._ids_table:  # under the lock: workers starting together create it once
                pg.execute(
                    "CREATE TABLE IF NOT EXISTS mailops_lake_ids"
                    " (name TEXT PRIMARY KEY, hi BIGINT NOT NULL)"
                )
                self._ids_table = True
        except psycopg.errors.LockNotAvailable:
            raise StoreBusy(
                f"lake {self.target.dsn}: another writer held the store for {self.timeout:.0f} s",
                guidance="a long write is running; retry in a moment",
            ) from None
        except psycopg.Error as e:
            self.close()
            raise StoreError(f"lake catalog {self.target.dsn}: {str(e).strip()}") from None

    def marks(self) -> dict[str, int]:
        """The highest id any session took, per sequence (the lock held)."""
        rows = self._conn().execute("SELECT name, hi FROM mailops_lake_ids").fetchall()
        return {str(name): int(hi) for name, hi in rows}

    def raise_marks(self, taken: dict[str, int]) -> None:
        self._conn().cursor().executemany(
            "INSERT INTO mailops_lake_ids (name, hi) VALUES (%s, %s) ON CONFLICT (name)"
            " DO UPDATE SET hi = greatest(mailops_lake_ids.hi, excluded.hi)",
            list(taken.items()),
        )

    def release(self) -> None:
        if self._since:
            self.held_s += time.perf_counter() - self._since
            self._since = 0.0
        if self._pg is not None and not self._pg.closed:
            try:
                self._pg.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
            except Exception:  # noqa: BLE001 - a broken connection has dropped the lock
                self.close()

    def close(self) -> None:
        if self._pg is not None:
            try:
                self._pg.close()
            finally:
                self._pg = None


# -- the schema ------------------------------------------------------------------------
_NEXTVAL = re.compile(r"nextval\('(\w+)'\)")


@dataclass
class Schema:
    """What the migrations build, read off an in-memory DuckDB that applied them."""

    tables: dict[str, list[tuple[str, str, str | None, bool]]] = field(default_factory=dict)
    keys: dict[str, list[list[str]]] = field(default_factory=dict)  # table -> key column sets
    sequences: dict[str, tuple[str, str]] = field(default_factory=dict)  # seq -> (table, col)
    views: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, migrations: Sequence[Migration]) -> Schema:
        from mailops.store import Store

        ref = Store(":memory:", migrate=False)
        try:
            ref.migrate(migrations)
            s = cls()
            for table, column, dtype, default, nullable in ref.rows(
                "SELECT table_name, column_name, data_type, column_default, is_nullable"
                " FROM duckdb_columns() WHERE database_name = 'memory' AND schema_name = 'main'"
                " AND NOT internal AND table_name NOT IN (SELECT view_name FROM duckdb_views())"
                " ORDER BY table_name, column_index"
            ):
                s.tables.setdefault(table, []).append((column, dtype, default, not nullable))
                seq = _NEXTVAL.search(default or "")
                if seq:
                    s.sequences[seq.group(1)] = (table, column)
            for table, _kind, cols in ref.rows(
                "SELECT table_name, constraint_type, constraint_column_names"
                " FROM duckdb_constraints() WHERE database_name = 'memory'"
                " AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')"
                " ORDER BY table_name, constraint_type <> 'PRIMARY KEY', constraint_index"
            ):
                s.keys.setdefault(table, []).append(list(cols))
            s.views = [
                (name, sql)
                for name, sql in ref.rows(
                    "SELECT view_name, sql FROM duckdb_views()"
                    " WHERE database_name = 'memory' AND NOT internal ORDER BY view_oid"
                )
            ]
            return s
        finally:
            ref.close()


_LAKE_META = """
CREATE TABLE IF NOT EXISTS schema_migrations (name VARCHAR NOT NULL, applied_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS lake_keys (table_name VARCHAR, ord INTEGER, columns VARCHAR[]);
CREATE TABLE IF NOT EXISTS lake_sequences (name VARCHAR, table_name VARCHAR, column_name VARCHAR);
"""


def _column_sql(column: str, dtype: str, default: str | None, not_null: bool) -> str:
    sql = f'"{column}" {dtype}'
    if default is not None:
        sql += f" DEFAULT {default}"
    if not_null:
        sql += " NOT NULL"
    return sql


def applied(conn: duckdb.DuckDBPyConnection) -> set[str]:
    """The migrations the lake has (none: a new lake)."""
    try:
        return {str(r[0]) for r in conn.execute("SELECT name FROM schema_migrations").fetchall()}
    except duckdb.CatalogException:
        return set()


def migrate(store: Store, migrations: Sequence[Migration]) -> list[str]:
    """Bring the lake to the migrations' schema: create missing tables, add missing
    columns, (re)create views, record the keys and sequences, and the migration names.
    Runs under the write lock, so workers starting together migrate once."""
    dialect = store.dialect
    assert dialect is not None
    recorded = applied(store.conn)
    if all(m.name in recorded for m in migrations):
        return []  # the usual case, without the write lock
    with store.transaction():
        for stmt in _LAKE_META.strip().split(";\n"):
            store.conn.execute(stmt)
        done = {r[0] for r in store.conn.execute("SELECT name FROM schema_migrations").fetchall()}
        pending = [m.name for m in migrations if m.name not in done]
        if not pending:
            return []
        schema = Schema.of(migrations)
        for seq in schema.sequences:
            store.conn.execute(f"CREATE TEMP SEQUENCE IF NOT EXISTS {seq}")
        have: dict[str, set[str]] = {}
        for table, column in store.conn.execute(
            "SELECT table_name, column_name FROM duckdb_columns()"
            f" WHERE database_name = '{ALIAS}' AND schema_name = 'main'"
        ).fetchall():
            have.setdefault(table, set()).add(column)
        for table, columns in schema.tables.items():
            if table in ("schema_migrations",):
                continue
            if table not in have:
                cols = ", ".join(_column_sql(*c) for c in columns)
                store.conn.execute(f"CREATE TABLE {table} ({cols})")
                continue
            for column, dtype, default, _not_null in columns:
                if column not in have[table]:
                    extra = f" DEFAULT {default}" if default is not None else ""
                    store.conn.execute(f'ALTER TABLE {table} ADD COLUMN "{column}" {dtype}{extra}')
        for _name, sql in schema.views:
            store.conn.execute(re.sub(r"^CREATE VIEW", "CREATE OR REPLACE VIEW", sql.strip()))
        store.conn.execute("DELETE FROM lake_keys")
        store.conn.execute("DELETE FROM lake_sequences")
        for table, key_sets in schema.keys.items():
            for i, key in enumerate(key_sets):
                store.conn.execute("INSERT INTO lake_keys VALUES (?, ?, ?)", [table, i, key])
        for seq, (table, column) in schema.sequences.items():
            store.conn.execute("INSERT INTO lake_sequences VALUES (?, ?, ?)", [seq, table, column])
        for name in pending:
            store.conn.execute("INSERT INTO schema_migrations VALUES (?, now()::TIMESTAMP)", [name])
        dialect.load(store.conn)
    return pending


# -- the dialect -----------------------------------------------------------------------
_UPSERT = re.compile(
    r"^\s*INSERT\s+INTO\s+(?P<table>\w+)\s*\((?P<cols>[^)]*)\)\s*(?P<source>.*?)"
    r"\s+ON\s+CONFLICT\s*(?:\((?P<keys>[^)]*)\))?\s*DO\s+"
    r"(?:(?P<nothing>NOTHING)|UPDATE\s+SET\s+(?P<sets>.*?))\s*;?\s*$",
    re.S | re.I,
)
_RETURNING_INSERT = re.compile(
    r"^\s*INSERT\s+INTO\s+(?P<table>\w+)\s*\((?P<cols>[^)]*)\)\s*(?P<values>VALUES\s*\(.*\))"
    r"\s*RETURNING\s+(?P<ret>\w+)\s*$",
    re.S | re.I,
)
_RETURNING_UPDATE = re.compile(
    r"^\s*UPDATE\s+(?P<table>\w+)\s+SET\s+(?P<sets>.*?)\s+WHERE\s+(?P<where>.*?)"
    r"\s+RETURNING\s+(?P<ret>\w+)\s*$",
    re.S | re.I,
)
_WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|MERGE|CREATE|DROP|ALTER)\b", re.I)


def _exec(conn: duckdb.DuckDBPyConnection, sql: str, params: Any) -> duckdb.DuckDBPyConnection:
    """Execute SQL with PARAMS written in as literals where they have one (after the
    dialect read the SQL: a literal's text must not meet its patterns); binding makes
    DuckDB import pandas (``store.literals``)."""
    text = inline(sql, params) if params else None
    return conn.execute(text) if text is not None else conn.execute(sql, params or [])


def _names(cols: str) -> list[str]:
    return [c.strip() for c in cols.split(",") if c.strip()]


def _bare(name: str) -> str:
    return name.strip().strip('"')


def is_write(sql: str) -> bool:
    """A statement that changes the lake, or takes a sequence number."""
    return bool(_WRITE.match(sql) or _NEXTVAL.search(sql))


@dataclass
class Dialect:
    """The lake's SQL differences, for one session: keys for MERGE, the temporary
    sequences and the snapshot they were seeded at."""

    keys: dict[str, list[list[str]]] = field(default_factory=dict)
    sequences: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: per sequence, the highest id this session knows to be taken (by anyone)
    known: dict[str, int] = field(default_factory=dict)

    def load(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Read the keys and sequences the migrations recorded; create the session's
        temporary sequences (placed before the first write)."""
        try:
            keys = conn.execute(
                "SELECT table_name, columns FROM lake_keys ORDER BY table_name, ord"
            ).fetchall()
        except duckdb.CatalogException:
            return  # a new lake: migrate() creates the tables, then loads again
        self.keys = {}
        for table, cols in keys:
            self.keys.setdefault(table, []).append(list(cols))
        self.sequences = {
            name: (table, column)
            for name, table, column in conn.execute(
                "SELECT name, table_name, column_name FROM lake_sequences"
            ).fetchall()
        }
        for seq in self.sequences:
            conn.execute(f"CREATE TEMP SEQUENCE IF NOT EXISTS {seq}")
        self.known = {}

    def reseed(self, conn: duckdb.DuckDBPyConnection, lock: WriteLock) -> None:
        """Before a write (the write lock held): move each sequence past the highest id
        any session took. A session's first write also looks at the lake's own ids."""
        if not self.sequences:
            return
        marks = lock.marks()
        if not self.known:
            names = list(self.sequences)
            picks = ", ".join(
                f'(SELECT coalesce(max("{col}"), 0) FROM {table})'
                for table, col in (self.sequences[n] for n in names)
            )
            row = conn.execute(f"SELECT {picks}").fetchone() or ()
            for name, top in zip(names, row, strict=True):
                marks[name] = max(marks.get(name, 0), int(top))
        for name in self.sequences:
            hi = marks.get(name, 0)
            if name not in self.known or hi > self.known[name]:
                conn.execute(f"CREATE OR REPLACE TEMP SEQUENCE {name} START WITH {hi + 1}")
                self.known[name] = hi

    def publish(self, conn: duckdb.DuckDBPyConnection, lock: WriteLock) -> None:
        """After a write (the lock still held), committed or not: record the ids this
        session took, so no other session takes them again."""
        if not self.sequences:
            return
        taken = {
            str(name): int(last)
            for name, last in conn.execute(
                "SELECT sequence_name, last_value FROM duckdb_sequences()"
                " WHERE database_name = 'temp' AND last_value IS NOT NULL"
            ).fetchall()
            if name in self.sequences and int(last) > self.known.get(name, 0)
        }
        if taken:
            lock.raise_marks(taken)
            self.known.update(taken)

    def sequence_of(self, table: str, column: str) -> str | None:
        for name, (t, c) in self.sequences.items():
            if t == table and c == column:
                return name
        return None

    # -- statements ----------------------------------------------------------------
    def translate(self, sql: str) -> str:
        """``INSERT ... ON CONFLICT`` as ``MERGE INTO`` on the table's keys; any other
        statement as it is."""
        m = _UPSERT.match(sql)
        if m is None:
            return sql
        table = m.group("table")
        cols = _names(m.group("cols"))
        source = m.group("source").strip()
        if source.upper().startswith("VALUES"):
            source = f"SELECT * FROM ({source})"
        if m.group("keys"):
            key_sets = [[_bare(k) for k in _names(m.group("keys"))]]
        else:  # like DuckDB: any of the table's keys that the insert gives values for
            known = self.keys.get(table)
            if not known:
                raise StoreError(f"lake: no key known for ON CONFLICT on {table}")
            given = {_bare(c) for c in cols}
            key_sets = [k for k in known if set(k) <= given]
            if not key_sets:  # every key is a fresh sequence number: nothing can conflict
                return f"INSERT INTO {table} ({', '.join(cols)}) {m.group('source').strip()}"
        aliases = ", ".join(cols)
        on = " OR ".join(
            "(" + " AND ".join(f'{table}."{k}" = excluded."{k}"' for k in keys) + ")"
            for keys in key_sets
        )
        distinct = ", ".join(f'"{k}"' for k in key_sets[0])
        using = f"(SELECT DISTINCT ON ({distinct}) * FROM ({source}) AS s({aliases}))"
        merged = f"MERGE INTO {table} USING {using} AS excluded ON {on}"
        if m.group("sets"):
            merged += f" WHEN MATCHED THEN UPDATE SET {m.group('sets')}"
        values = ", ".join(f"excluded.{c}" for c in cols)
        return f"{merged} WHEN NOT MATCHED THEN INSERT ({aliases}) VALUES ({values})"

    def run(
        self, conn: duckdb.DuckDBPyConnection, sql: str, params: Any
    ) -> duckdb.DuckDBPyConnection | list[tuple]:
        """Execute SQL the lake way: RETURNING (which lake tables lack) by hand, ON
        CONFLICT as MERGE. Returns the cursor, or the rows of a RETURNING."""
        m = _RETURNING_INSERT.match(sql)
        if m is not None:
            seq = self.sequence_of(m.group("table"), m.group("ret"))
            if seq is not None:
                row = conn.execute(f"SELECT nextval('{seq}')").fetchone()
                assert row is not None
                new_id = int(row[0])
                values = m.group("values").strip()
                inner = values[values.index("(") + 1 : values.rindex(")")]
                _exec(
                    conn,
                    f"INSERT INTO {m.group('table')} ({m.group('ret')}, {m.group('cols')})"
                    f" VALUES (?, {inner})",
                    [new_id, *list(params or [])],
                )
                return [(new_id,)]
        u = _RETURNING_UPDATE.match(sql)
        if u is not None:
            args = list(params or [])
            n_set = u.group("sets").count("?")
            where = u.group("where")
            ids = _exec(
                conn, f"SELECT {u.group('ret')} FROM {u.group('table')} WHERE {where}", args[n_set:]
            ).fetchall()
            _exec(conn, f"UPDATE {u.group('table')} SET {u.group('sets')} WHERE {where}", args)
            return ids
        return _exec(conn, self.translate(sql), params)


def compact(store: Store) -> None:
    """G1 on a lake: deleted rows live on in older snapshots (time travel), in Parquet files
    and in rows inlined in the catalog. Leave no byte of them behind: flush inlined rows
    into files, rewrite every file with deletions, expire every older snapshot, remove the
    files nobody references."""
    maintain(store, keep_days=0, erase=True)


def maintain(store: Store, *, keep_days: float = 7.0, erase: bool = False) -> dict[str, int]:
    """The lake's upkeep (``mailops db gc``): every commit of a worker adds a snapshot, small
    inserts live as rows in the catalog, every other commit may add small Parquet files.
    Flush the inlined rows into files, merge small files, expire snapshots older than
    KEEP_DAYS (time travel before that is given up), remove the files nobody references.
    ERASE (``compact``): also rewrite every file that has deleted rows, and remove files
    no snapshot ever referenced."""
    assert store._write_lock is not None
    sql = {"flushed": f"SELECT * FROM ducklake_flush_inlined_data('{ALIAS}')"}
    if erase:
        sql["rewritten"] = (
            f"SELECT * FROM ducklake_rewrite_data_files('{ALIAS}', delete_threshold => 0)"
        )
    sql["merged"] = f"SELECT * FROM ducklake_merge_adjacent_files('{ALIAS}')"
    sql["expired"] = (
        f"SELECT snapshot_id FROM ducklake_expire_snapshots('{ALIAS}',"
        f" older_than => now() - INTERVAL '{float(keep_days) * 86400:.0f} seconds')"
    )
    sql["removed"] = f"SELECT path FROM ducklake_cleanup_old_files('{ALIAS}', cleanup_all => true)"
    if erase:
        sql["orphans"] = (
            f"SELECT path FROM ducklake_delete_orphaned_files('{ALIAS}', cleanup_all => true)"
        )
    out: dict[str, int] = {}
    store._write_lock.acquire()
    try:
        for name, q in sql.items():
            rows = store.conn.execute(q).fetchall()
            # flush: (schema, table, rows flushed) per table; the others: a row per item
            out[name] = sum(int(r[2]) for r in rows) if name == "flushed" else len(rows)
    except duckdb.Error as e:
        raise StoreError(f"lake maintenance failed: {str(e).splitlines()[0]}") from None
    finally:
        store._write_lock.release()
    return out
