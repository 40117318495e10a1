"""S14: at most one sync of a mailbox at a time -- a lease per mailbox.

A sync takes the mailbox's lease before any server work and gives it back when its run is
recorded. A second sync of the same mailbox (a cron job and a person, two schedulers)
waits briefly for it, then reports who holds it (``already syncing (pid N, since T)``) and
moves on to its other mailboxes.

``Leases`` is the small interface the sync engine sees. Its backend for the embedded DuckDB
store is a lock file per mailbox (``<db>.leases/<mailbox id>.lock``) held with ``flock``:

* DuckDB lets one process write at a time, but syncs hand the file over between batches,
  so a lease row in the store would need a heartbeat written through that shared door;
  an OS lock needs none.
* The kernel drops the lock the moment its holder dies (``kill -9`` included): a lease
  left by a killed process is recovered at once, with no expiry to wait for. The file's
  content (pid, host, since) only describes the holder for the message.
* ``:memory:`` stores (tests) get process-local leases.

Past one machine (D1: DuckLake with a PostgreSQL catalog) the same interface is backed by
PostgreSQL (``PgLeases``): a ``sync_leases`` row per mailbox in the catalog's database
(holder, host, pid, since, expires_at), created when missing.

* Claim by compare-and-swap: ``INSERT ... ON CONFLICT (mailbox_id) DO UPDATE ... WHERE
  sync_leases.expires_at < now() OR sync_leases.holder = excluded.holder RETURNING ...``.
  PostgreSQL row-locks the conflicting row and re-checks the WHERE on its newest version,
  so of two workers claiming at once exactly one gets a row back. The holder is a token per
  claim (host, pid, random): the ``holder = excluded.holder`` arm makes a retried claim (a
  dropped connection after the commit) idempotent, never lets a second claim of the same
  process in. Every time is PostgreSQL's ``now()``: the workers' clocks do not matter.
* A TTL (``lease_ttl``, default 60 s): a background thread renews every held lease each
  ttl/3 in one UPDATE; a lease whose row is gone or has another holder is marked ``lost``
  (logged; the writes are idempotent, D1, so a sync that went on after losing its lease
  stores nothing twice).
* Release deletes the row (only if still ours). A holder killed with ``kill -9`` leaves its
  row; once it expires, the next claim by another worker takes it over.

An advisory lock would free a dead holder's mailboxes sooner, but it lives in one
connection: a pooled or dropped connection would lose it silently, and it can say nothing
about who holds a mailbox or since when. A row with an expiry survives reconnects and is
what ``mailops`` shows in ``already syncing (pid N on host, since T)``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from mailops.errors import MailopsError

log = logging.getLogger(__name__)

__all__ = [
    "FileLeases",
    "Holder",
    "Lease",
    "LeaseLost",
    "Leases",
    "LocalLeases",
    "MailboxBusy",
    "PgLeases",
    "leases_for",
    "pg_leases",
]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


@dataclass(frozen=True)
class Holder:
    """Who holds a mailbox's lease (what a second sync tells its user)."""

    pid: int
    host: str
    since: datetime
    purpose: str = "sync"

    def describe(self) -> str:
        where = "" if self.host == socket.gethostname() else f" on {self.host}"
        return f"pid {self.pid}{where}, since {self.since.isoformat(sep=' ')} UTC"

    def as_dict(self) -> dict[str, object]:
        return {"pid": self.pid, "host": self.host, "since": self.since.isoformat()}


class MailboxBusy(MailopsError):
    """Another sync holds the mailbox's lease."""

    code = "already_syncing"
    exit_code = 11

    def __init__(self, mailbox_id: int, holder: Holder | None) -> None:
        who = f" ({holder.describe()})" if holder else ""
        super().__init__(
            f"mailbox {mailbox_id}: already syncing{who}",
            guidance="another mailops sync of this mailbox is running; it will finish the work",
        )
        self.mailbox_id = mailbox_id
        self.holder = holder


class Lease(Protocol):
    mailbox_id: int
    holder: Holder

    def renew(self) -> None: ...

    def release(self) -> None: ...


class Leases(Protocol):
    """Claim a mailbox for one sync. ``acquire`` raises ``MailboxBusy`` after WAIT seconds."""

    def acquire(self, mailbox_id: int, *, wait: float = 0.0) -> Lease: ...

    def holder(self, mailbox_id: int) -> Holder | None: ...


def _me(purpose: str) -> Holder:
    return Holder(os.getpid(), socket.gethostname(), _now(), purpose)


def _poll(try_once: Callable[[], Lease | None], wait: float, step: float = 0.1) -> Lease | None:
    deadline = time.monotonic() + max(0.0, wait)
    while True:
        got = try_once()
        if got is not None or time.monotonic() >= deadline:
            return got
        time.sleep(min(step, max(0.0, deadline - time.monotonic())))


# -- lock files (the embedded DuckDB store) ---------------------------------------------
@dataclass
class _FileLease:
    mailbox_id: int
    holder: Holder
    fd: int | None

    def renew(self) -> None:  # the kernel lock needs no renewal; keep the file fresh
        if self.fd is not None:
            os.utime(self.fd)

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class FileLeases:
    """One ``flock``-ed file per mailbox in DIRECTORY (0700); released by the kernel when
    the holder dies."""

    def __init__(self, directory: str | os.PathLike[str], purpose: str = "sync") -> None:
        self.dir = Path(directory)
        self.purpose = purpose

    def _path(self, mailbox_id: int) -> Path:
        return self.dir / f"{int(mailbox_id)}.lock"

    def _try(self, mailbox_id: int) -> _FileLease | None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self._path(mailbox_id), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        me = _me(self.purpose)
        data = json.dumps({**me.as_dict(), "purpose": me.purpose}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        return _FileLease(mailbox_id, me, fd)

    def acquire(self, mailbox_id: int, *, wait: float = 0.0) -> Lease:
        got = _poll(lambda: self._try(mailbox_id), wait)
        if got is None:
            raise MailboxBusy(mailbox_id, self.holder(mailbox_id))
        return got

    def holder(self, mailbox_id: int) -> Holder | None:
        """The holder described in the lock file, if the file is locked right now."""
        path = self._path(mailbox_id)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # held: read who holds it
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)
                return None  # free (a leftover file of a dead holder)
            raw = os.pread(fd, 4096, 0)
        finally:
            os.close(fd)
        try:
            d = json.loads(raw or b"{}")
            return Holder(
                int(d["pid"]),
                str(d["host"]),
                datetime.fromisoformat(d["since"]),
                d.get("purpose", "sync"),
            )
        except (ValueError, KeyError, TypeError):
            return Holder(0, "?", _now())  # written this very moment


# -- process-local (``:memory:`` stores) -------------------------------------------------
@dataclass
class _LocalLease:
    mailbox_id: int
    holder: Holder
    owner: LocalLeases

    def renew(self) -> None:
        return None

    def release(self) -> None:
        self.owner._release(self)


class LocalLeases:
    def __init__(self) -> None:
        self._held: dict[int, _LocalLease] = {}
        self._lock = threading.Lock()

    def _try(self, mailbox_id: int) -> _LocalLease | None:
        with self._lock:
            if mailbox_id in self._held:
                return None
            lease = self._held[mailbox_id] = _LocalLease(mailbox_id, _me("sync"), self)
            return lease

    def _release(self, lease: _LocalLease) -> None:
        with self._lock:
            if self._held.get(lease.mailbox_id) is lease:
                del self._held[lease.mailbox_id]

    def acquire(self, mailbox_id: int, *, wait: float = 0.0) -> Lease:
        got = _poll(lambda: self._try(mailbox_id), wait)
        if got is None:
            raise MailboxBusy(mailbox_id, self.holder(mailbox_id))
        return got

    def holder(self, mailbox_id: int) -> Holder | None:
        with self._lock:
            lease = self._held.get(mailbox_id)
            return lease.holder if lease else None


# -- lease rows in PostgreSQL (D1: the lake) --------------------------------------------
DEFAULT_TTL = 60.0  # seconds; ``lease_ttl``


def _rows() -> Any:
    """The statements (``mailops.store.lease_rows``: SQL lives in the store package, P1)."""
    from mailops.store import lease_rows

    return lease_rows


class LeaseLost(MailopsError):
    """A lease expired and another worker took the mailbox over (or the row is gone)."""

    code = "lease_lost"
    exit_code = 11


def _naive_utc(ts: datetime) -> datetime:
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts.replace(microsecond=0)


@dataclass
class _PgLease:
    mailbox_id: int
    holder: Holder
    token: str
    owner: PgLeases
    expires_at: datetime  # PostgreSQL's clock (naive UTC)
    deadline: float = 0.0  # our monotonic clock: past it, unrenewed, the lease may be gone
    lost: bool = False
    released: bool = False

    def renew(self) -> None:
        """Renew now (the background thread does it every ttl/3); LeaseLost if it is gone."""
        self.owner._renew([self])
        if self.lost:
            raise LeaseLost(f"mailbox {self.mailbox_id}: the sync lease was lost")

    def release(self) -> None:
        self.owner._release(self)


class PgLeases:
    """Lease rows in PostgreSQL (DSN: a libpq URI or keyword string): one connection per
    instance (autocommit, shared by threads under a lock, reconnected when it drops) and one
    daemon thread renewing this instance's leases every TTL/3."""

    def __init__(
        self,
        dsn: str,
        *,
        ttl: float = DEFAULT_TTL,
        purpose: str = "sync",
        connect_timeout: float = 10.0,
        on_lost: Callable[[_PgLease], None] | None = None,
    ) -> None:
        if ttl <= 0:
            raise ValueError("lease ttl must be positive")
        self.dsn = dsn
        self.ttl = float(ttl)
        self.purpose = purpose
        self.connect_timeout = connect_timeout
        self.on_lost = on_lost
        self._conn: Any = None
        self._lock = threading.Lock()  # the connection
        self._held: dict[str, _PgLease] = {}
        self._held_lock = threading.Lock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    # -- the connection -------------------------------------------------------------
    def _connect(self) -> Any:
        import psycopg

        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            conn = psycopg.connect(
                self.dsn,
                autocommit=True,
                connect_timeout=max(1, int(self.connect_timeout)),
                application_name="mailops-leases",
                # a peer that vanished without a reset must not hang the renewer past the
                # TTL: keepalives notice it in ~25 s, unacknowledged sends fail after 15 s
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
                tcp_user_timeout=15000,
            )
        except psycopg.Error as e:
            from mailops.errors import StoreError

            raise StoreError(
                f"cannot reach the lease database: {' '.join(str(e).split())[:300]}",
                guidance="is PostgreSQL running? (mailops devserver postgres status)",
            ) from None
        # every statement here is one short row operation: never wait long for one
        conn.execute(_rows().TIMEOUT, [f"{int(max(1.0, self.ttl / 3) * 1000)}ms"])
        with conn.transaction():  # two first workers at once: one creates the table
            conn.execute(_rows().CREATE_LOCK)
            conn.execute(_rows().CREATE)
        self._conn = conn
        return conn

    def _execute(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement (retried once on a fresh connection: every statement here is
        idempotent for its holder token)."""
        import psycopg

        with self._lock:
            for attempt in (1, 2):
                conn = self._connect()
                try:
                    cur = conn.execute(sql, params)
                    return list(cur.fetchall()) if cur.description else []
                except psycopg.OperationalError as e:  # dropped, timed out
                    with contextlib.suppress(Exception):
                        conn.close()
                    self._conn = None
                    if attempt == 2:
                        from mailops.errors import StoreError

                        raise StoreError(
                            f"the lease database failed: {' '.join(str(e).split())[:300]}",
                            guidance="is PostgreSQL reachable and not overloaded?",
                        ) from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Stop renewing and close the connection (held leases expire by themselves)."""
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join(5)
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None

    # -- Leases -----------------------------------------------------------------------
    def _try(self, mailbox_id: int) -> _PgLease | None:
        me = _me(self.purpose)
        token = f"{me.host}:{me.pid}:{uuid.uuid4().hex[:16]}"
        t0 = time.monotonic()
        rows = self._execute(
            _rows().CLAIM,
            {
                "id": int(mailbox_id),
                "holder": token,
                "host": me.host,
                "pid": me.pid,
                "purpose": me.purpose,
                "ttl": self.ttl,
            },
        )
        if not rows:
            return None
        since, expires = rows[0]
        holder = Holder(me.pid, me.host, _naive_utc(since), me.purpose)
        lease = _PgLease(int(mailbox_id), holder, token, self, _naive_utc(expires), t0 + self.ttl)
        with self._held_lock:
            self._held[token] = lease
        self._start_renewer()
        return lease

    def acquire(self, mailbox_id: int, *, wait: float = 0.0) -> Lease:
        got = _poll(lambda: self._try(mailbox_id), wait, step=0.25)
        if got is None:
            raise MailboxBusy(mailbox_id, self.holder(mailbox_id))
        return got

    def holder(self, mailbox_id: int) -> Holder | None:
        rows = self._execute(_rows().HOLDER, [int(mailbox_id)])
        if not rows:
            return None
        pid, host, since, purpose = rows[0]
        return Holder(int(pid), str(host), _naive_utc(since), str(purpose))

    def held_ids(self) -> set[int]:
        """Mailboxes whose lease someone holds right now (a worker skips them)."""
        rows = self._execute(_rows().HELD)
        return {int(r[0]) for r in rows}

    def held_here(self) -> list[_PgLease]:
        with self._held_lock:
            return list(self._held.values())

    def _release(self, lease: _PgLease) -> None:
        with self._held_lock:
            if lease.released:
                return
            lease.released = True
            self._held.pop(lease.token, None)
        if lease.lost:
            return  # not ours any more: leave the new holder's row alone
        try:
            self._execute(_rows().RELEASE, [lease.mailbox_id, lease.token])
        except Exception as e:  # noqa: BLE001 - the row expires by itself
            log.warning("mailbox %s: could not give the lease back: %s", lease.mailbox_id, e)

    # -- renewal ----------------------------------------------------------------------
    def _renew(self, leases: Sequence[_PgLease]) -> None:
        live = [x for x in leases if not (x.lost or x.released)]
        if not live:
            return
        t0 = time.monotonic()
        try:
            rows = self._execute(_rows().RENEW, [self.ttl, [x.token for x in live]])
        except Exception as e:  # noqa: BLE001 - PostgreSQL away: try again next round
            log.warning("could not renew %d sync lease(s): %s", len(live), e)
            for x in live:
                if time.monotonic() > x.deadline:
                    self._lose(x, "not renewed before it expired")
            return
        renewed = {str(token): expires for token, expires in rows}
        for x in live:
            if x.released:  # given back while the UPDATE ran: its row is gone, not lost
                continue
            if x.token in renewed:
                x.expires_at = _naive_utc(renewed[x.token])
                x.deadline = t0 + self.ttl
            else:
                self._lose(x, "taken over by another worker after it expired")

    def _lose(self, lease: _PgLease, why: str) -> None:
        if lease.lost:
            return
        lease.lost = True
        log.warning("mailbox %s: sync lease lost (%s)", lease.mailbox_id, why)
        if self.on_lost is not None:
            with contextlib.suppress(Exception):
                self.on_lost(lease)

    def _start_renewer(self) -> None:
        if self._renewer is not None and self._renewer.is_alive():
            return
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_loop, name="lease-renewer", daemon=True)
        self._renewer.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            held = self.held_here()
            if held:
                self._renew(held)


_LOCAL: dict[str, LocalLeases] = {}
_PG: dict[tuple[str, int, float], PgLeases] = {}
_PG_LOCK = threading.Lock()


def pg_leases(dsn: str, ttl: float | None = None) -> PgLeases:
    """The process's PgLeases for DSN (one connection and renewer per process and TTL)."""
    ttl = float(ttl if ttl is not None else _configured_ttl())
    key = (dsn, os.getpid(), ttl)  # a forked child gets its own connection
    with _PG_LOCK:
        found = _PG.get(key)
        if found is None:
            found = _PG[key] = PgLeases(dsn, ttl=ttl)
        return found


def _configured_ttl() -> float:
    from mailops.config import Settings

    try:
        return float(Settings.load().lease_ttl)
    except MailopsError:
        return DEFAULT_TTL


def lake_dsn(name: str) -> str | None:
    """The PostgreSQL DSN in a store name ``ducklake:postgres://...[?data=/path]`` (None for
    another name): the store's own ``data`` parameter is not libpq's."""
    if not name.startswith("ducklake:"):
        return None
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    dsn = name.removeprefix("ducklake:")
    if dsn.startswith("postgres:") and not dsn.startswith("postgres://"):
        dsn = dsn.removeprefix("postgres:")  # DuckDB's spelling: postgres:<libpq keywords>
    if "://" not in dsn:
        return dsn  # libpq keywords (``ducklake:postgres:dbname=... host=...``)
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "data"]
    return urlunsplit(parts._replace(query=urlencode(query)))


def leases_for(store: object) -> Leases:
    """The lease backend of STORE (a ``Store``, or a store name: a file path, ``:memory:``,
    ``ducklake:postgres://...``): lock files beside a file, process-local for memory,
    PostgreSQL rows for the lake (``store.backend == "lake"``, in ``store.lake_dsn``)."""
    if isinstance(store, (str, os.PathLike)):
        db = os.fspath(store)
    elif getattr(store, "backend", "file") == "lake":
        return pg_leases(str(getattr(store, "lake_dsn", "")))
    else:
        db = str(getattr(store, "path", ""))
    dsn = lake_dsn(db)
    if dsn is not None:
        return pg_leases(dsn)
    if db == ":memory:" or not db:
        return _LOCAL.setdefault(":memory:", LocalLeases())
    return FileLeases(f"{Path(db).resolve()}.leases")


@contextlib.contextmanager
def held(leases: Leases, mailbox_id: int, *, wait: float = 0.0) -> Iterator[Lease]:
    lease = leases.acquire(mailbox_id, wait=wait)
    try:
        yield lease
    finally:
        lease.release()
