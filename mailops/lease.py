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
PostgreSQL: a ``sync_leases`` row per mailbox (holder, host, pid, expires_at) claimed with
``INSERT ... ON CONFLICT DO UPDATE ... WHERE expires_at < now()``, renewed by the holder
(``renew``) and recovered when it expires -- or a session-level advisory lock, which
PostgreSQL releases when the holder's connection dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from mailops.errors import MailopsError

__all__ = ["FileLeases", "Holder", "Lease", "Leases", "LocalLeases", "MailboxBusy", "leases_for"]


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


_LOCAL: dict[str, LocalLeases] = {}


def leases_for(db: str) -> Leases:
    """The lease backend of the store at DB (a file path, or ``:memory:``)."""
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
