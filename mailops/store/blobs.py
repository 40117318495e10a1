"""Where message bytes live: small ones inline in DuckDB, large ones in a blob folder.

Raw messages (``message_raw``) and attachment contents (``attachment_blobs``) are content
addressed by sha256. Each has ONE catalog row in DuckDB; a blob of ``INLINE_MAX_BYTES`` or
less keeps its bytes in that row (``in_file = FALSE``), a larger one lives in the blob
folder beside the store, laid out like git's objects::

    mailops.duckdb
    mailops.duckdb.blobs/ab/cdef0123...   (sha256 = "abcdef0123...")
    mailops.duckdb.blobs/tmp/             (writes in progress)

Why a folder and not DuckDB BLOBs: DuckDB materialises a BLOB value several times over
while inserting it, inside the sync's capped buffer (``sync_memory_limit``); a 20 MB email
hit OutOfMemory and aborted the batch for good (S12). A file is written in chunks and
never held whole. Why not every blob in files: the 10k-message benchmark stores ~1,000
small customer mails per sync; one file (and fsync) each would cost more than the whole
DuckDB insert. So only what is big goes to disk.

Crash safety: a file is written under ``tmp/``, fsynced and renamed into place BEFORE the
transaction that adds its catalog row commits. A crash in between leaves at worst an
orphan file (``orphans`` lists them, ``remove_orphans`` deletes them), never a row without
its bytes. Erasure (G1) and backup find everything through this module: ``stats``,
``files``, ``erase``.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailops.store import Store
    from mailops.store.bulk import Column

__all__ = [
    "INLINE_MAX_BYTES",
    "BlobFolder",
    "BlobRef",
    "BlobWriter",
    "add_attachment",
    "attachment_bytes",
    "attachment_columns",
    "erase",
    "open_attachment",
    "orphans",
    "raw_bytes",
    "raw_columns",
    "remove_orphans",
    "stats",
]

INLINE_MAX_BYTES = 1024 * 1024
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class BlobRef:
    """Bytes already written to the blob folder (a message spooled while it was fetched)."""

    sha256: str
    size: int


class BlobWriter:
    """Write a blob in chunks: hashed as it goes, fsynced and renamed into place on
    ``commit()``; ``abort()`` (or leaving the ``with`` block by an error) removes it."""

    def __init__(self, folder: BlobFolder) -> None:
        self.folder = folder
        tmp = folder.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=tmp, prefix="w-")
        self.tmp = Path(name)
        self.file: IO[bytes] = os.fdopen(fd, "wb")
        self.hash = hashlib.sha256()
        self.size = 0
        self.ref: BlobRef | None = None

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.file.write(data)
        self.hash.update(data)
        self.size += len(data)
        return len(data)

    def commit(self) -> BlobRef:
        if self.ref is not None:
            return self.ref
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        sha = self.hash.hexdigest()
        final = self.folder.path(sha)
        if final.exists():  # content addressed: the same bytes are there already
            self.tmp.unlink(missing_ok=True)
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.tmp, final)
            _fsync_dir(final.parent)
        self.ref = BlobRef(sha, self.size)
        return self.ref

    def abort(self) -> None:
        if self.ref is None:
            try:
                self.file.close()
            finally:
                self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.abort()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class BlobFolder:
    """The content-addressed folder ``<store>.blobs`` (a temp folder for ``:memory:``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @classmethod
    def beside(cls, db_path: str) -> BlobFolder:
        if db_path == ":memory:":
            return cls(tempfile.mkdtemp(prefix="mailops-blobs-"))
        return cls(f"{db_path}.blobs")

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256: {sha256[:80]!r}")
        return self.root / sha256[:2] / sha256[2:]

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def put(self, data: bytes) -> BlobRef:
        with self.writer() as w:
            view = memoryview(data)
            for i in range(0, len(view), CHUNK):
                w.write(view[i : i + CHUNK])
            return w.commit()

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def open(self, sha256: str) -> IO[bytes]:
        return self.path(sha256).open("rb")

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def delete(self, sha256: str) -> bool:
        try:
            self.path(sha256).unlink()
            return True
        except FileNotFoundError:
            return False

    def files(self) -> Iterator[tuple[str, int]]:
        """(sha256, size) of every blob file (not the writes in progress)."""
        if not self.root.is_dir():
            return
        for sub in sorted(self.root.iterdir()):
            if len(sub.name) != 2 or not sub.is_dir():
                continue
            for f in sorted(sub.iterdir()):
                if f.is_file():
                    yield sub.name + f.name, f.stat().st_size

    def clear_tmp(self) -> int:
        """Remove writes a killed process left in ``tmp/``; returns how many."""
        tmp = self.root / "tmp"
        if not tmp.is_dir():
            return 0
        n = 0
        for f in tmp.iterdir():
            f.unlink(missing_ok=True)
            n += 1
        return n

    def remove_all(self) -> None:  # tests and :memory: stores
        shutil.rmtree(self.root, ignore_errors=True)


# -- catalog rows (used by store.messages.save_messages) ---------------------------------
Content = bytes | BlobRef


def _place(
    store: Store, data: Mapping[str, Content]
) -> tuple[list[str], list[int], list[bytes | None], list[bool]]:
    """sha -> bytes or BlobRef  ->  columns, writing the large ones to the blob folder."""
    shas: list[str] = []
    sizes: list[int] = []
    inline: list[bytes | None] = []
    in_file: list[bool] = []
    for sha, content in data.items():
        if isinstance(content, BlobRef):
            shas.append(sha)
            sizes.append(content.size)
            inline.append(None)
            in_file.append(True)
        elif len(content) > INLINE_MAX_BYTES:
            ref = store.blobs.put(content)
            shas.append(ref.sha256)
            sizes.append(ref.size)
            inline.append(None)
            in_file.append(True)
        else:
            shas.append(sha)
            sizes.append(len(content))
            inline.append(bytes(content))
            in_file.append(False)
    return shas, sizes, inline, in_file


def raw_columns(store: Store, raws: Mapping[str, Content]) -> list[Column]:
    """message_raw rows for ``bulk.append`` (the large ones written to the blob folder)."""
    shas, sizes, inline, in_file = _place(store, raws)
    return [
        ("sha256", "VARCHAR", shas),
        ("raw", "BLOB", inline),
        ("size", "BIGINT", sizes),
        ("in_file", "BOOLEAN", in_file),
    ]


def attachment_columns(store: Store, contents: Mapping[str, Content]) -> list[Column]:
    """attachment_blobs rows for ``bulk.append``."""
    shas, sizes, inline, in_file = _place(store, contents)
    return [
        ("sha256", "VARCHAR", shas),
        ("size", "BIGINT", sizes),
        ("content", "BLOB", inline),
        ("in_file", "BOOLEAN", in_file),
    ]


def add_attachment(store: Store, content: bytes) -> str:
    """Store one attachment content (idempotent); returns its sha256."""
    from mailops.store.bulk import append

    digest = hashlib.sha256(content).hexdigest()
    append(
        store,
        "attachment_blobs",
        attachment_columns(store, {digest: content}),
        conflict="ON CONFLICT DO NOTHING",
    )
    return digest


# -- readers -------------------------------------------------------------------------------
def _read(store: Store, table: str, column: str, sha256: str) -> bytes | None:
    if _has_in_file(store, table):
        row = store.rows(f"SELECT {column}, in_file FROM {table} WHERE sha256 = ?", [sha256])
    else:  # read by a migration that runs before 0010_blob_files: everything is inline
        row = [
            (r[0], False)
            for r in store.rows(f"SELECT {column} FROM {table} WHERE sha256 = ?", [sha256])
        ]
    if not row:
        return None
    content, in_file = row[0]
    if in_file:
        try:
            return store.blobs.read(sha256)
        except FileNotFoundError:
            return None
    return bytes(content) if content is not None else None


def _has_in_file(store: Store, table: str) -> bool:
    return bool(
        store.scalar(
            "SELECT count(*) FROM duckdb_columns() WHERE table_name = ? AND column_name = 'in_file'",
            [table],
        )
    )


def raw_bytes(store: Store, sha256: str) -> bytes | None:
    """The raw bytes of a stored message, by their sha256 (``messages.raw_sha256``)."""
    return _read(store, "message_raw", "raw", sha256)


def attachment_bytes(store: Store, sha256: str) -> bytes | None:
    """An attachment's content, by its sha256 (``attachments.sha256``)."""
    return _read(store, "attachment_blobs", "content", sha256)


def open_attachment(store: Store, sha256: str) -> IO[bytes] | None:
    """An attachment's content as a file to read in chunks (large ones are never loaded)."""
    row = store.rows("SELECT content, in_file FROM attachment_blobs WHERE sha256 = ?", [sha256])
    if not row:
        return None
    content, in_file = row[0]
    if in_file:
        try:
            return store.blobs.open(sha256)
        except FileNotFoundError:
            return None
    return io.BytesIO(bytes(content or b""))


# -- status, erasure, backup ------------------------------------------------------------------
def stats(store: Store) -> dict[str, Any]:
    """Where blobs live and how many / how big (``mailops db status``)."""
    out: dict[str, Any] = {"blob_folder": str(store.blobs.root)}
    for table, label in (("message_raw", "raw"), ("attachment_blobs", "attachments")):
        inline, inline_b, files, files_b = store.rows(
            f"SELECT count(*) FILTER (WHERE NOT coalesce(in_file, FALSE)),"
            f" coalesce(sum(size) FILTER (WHERE NOT coalesce(in_file, FALSE)), 0),"
            f" count(*) FILTER (WHERE in_file), coalesce(sum(size) FILTER (WHERE in_file), 0)"
            f" FROM {table}"
        )[0]
        out[f"{label}_inline"] = int(inline)
        out[f"{label}_inline_bytes"] = int(inline_b)
        out[f"{label}_in_files"] = int(files)
        out[f"{label}_in_files_bytes"] = int(files_b)
    on_disk = list(store.blobs.files())
    out["files"] = len(on_disk)
    out["files_bytes"] = sum(s for _, s in on_disk)
    out["orphans"] = len(orphans(store, on_disk))
    return out


def _referenced(store: Store) -> set[str]:
    return {
        r[0]
        for r in store.rows(
            "SELECT sha256 FROM message_raw WHERE in_file"
            " UNION SELECT sha256 FROM attachment_blobs WHERE in_file"
        )
    }


def orphans(store: Store, on_disk: Iterable[tuple[str, int]] | None = None) -> list[str]:
    """Blob files no catalog row names (left by a crash before a commit, or by an erasure
    interrupted after its commit)."""
    files = on_disk if on_disk is not None else store.blobs.files()
    known = _referenced(store)
    return [sha for sha, _ in files if sha not in known]


def remove_orphans(store: Store) -> int:
    n = 0
    for sha in orphans(store):
        n += store.blobs.delete(sha)
    store.blobs.clear_tmp()
    return n


def erase(store: Store, raw: Iterable[str] = (), attachments: Iterable[str] = ()) -> int:
    """G1: delete these raw messages / attachment contents, rows and files. Content still
    referenced by another message is the caller's to keep (content addressing shares
    bytes). Rows first (in the caller's transaction when there is one), files after: a
    crash in between leaves orphans, never a row without bytes. Returns files removed."""
    raw, attachments = sorted(set(raw)), sorted(set(attachments))
    files = {
        r[0]
        for r in store.rows(
            "SELECT sha256 FROM message_raw WHERE in_file AND list_contains(?, sha256)"
            " UNION SELECT sha256 FROM attachment_blobs WHERE in_file AND list_contains(?, sha256)",
            [raw, attachments],
        )
    }
    with store.transaction():
        if raw:
            store.execute("DELETE FROM message_raw WHERE list_contains(?, sha256)", [raw])
        if attachments:
            store.execute(
                "DELETE FROM attachment_blobs WHERE list_contains(?, sha256)", [attachments]
            )
    if store.in_transaction:  # the caller's transaction may still roll back
        return 0  # the files become orphans after its commit; remove_orphans() takes them
    return sum(store.blobs.delete(sha) for sha in files if sha not in _referenced(store))
