"""G1: erase everything stored for a person, with a receipt and a block.

``erase(store, address=A)`` (or ``customer=ID``: every address the customer ever had, and
the customer row) removes, in one transaction: the messages with the person on From, To or
Cc, their raw bytes, attachments and attachment blobs no other message or draft uses, their
places, activities, notifications and follow-up suggestions, outbox entries and drafts
addressed to him, never-log entries naming him; the ledger rows that named him keep their
decision (the run's counts stay right) but lose Message-ID, sender, subject and addresses.
It then writes a receipt -- what kind of target, counts per table, the sha256 of every
removed message and attachment, who, when; the target itself only as a sha256 -- and blocks
the address (its sha256) so no later sync (``match.decide`` skips with ``erased`` on the
headers, before any body is fetched) or directory import brings it back.

DuckDB keeps deleted bytes in free blocks until they are overwritten, so a real erasure
rewrites the file (``COPY FROM DATABASE`` into a fresh file, swapped in): ``compact``. On a
lake (D1) deleted rows live on in older snapshots, Parquet files and rows inlined in the
catalog: ``compact`` there expires every older snapshot and removes the files
(``mailops.store.lake.compact``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailops.errors import MailopsError, PermissionDenied
from mailops.match import address_hash
from mailops.permissions import Viewer, scope_for
from mailops.store import Store
from mailops.store import erasure as erstore

__all__ = ["Erasure", "compact", "erase"]


@dataclass
class Erasure:
    target_kind: str  # address | customer
    target_sha256: str
    counts: dict[str, int] = field(default_factory=dict)
    content_sha256: list[str] = field(default_factory=list)
    by: str = ""
    receipt_id: int | None = None  # None for a dry run
    compacted: bool = False

    @property
    def dry_run(self) -> bool:
        return self.receipt_id is None

    def line(self) -> str:
        what = ", ".join(f"{n} {t}" for t, n in self.counts.items() if n) or "nothing stored"
        head = "would erase" if self.dry_run else f"erased (receipt {self.receipt_id})"
        return f"{head}: {what}; {len(self.content_sha256)} content hash(es)"

    def receipt(self) -> dict[str, Any]:
        return {
            "receipt": self.receipt_id,
            "target_kind": self.target_kind,
            "target_sha256": self.target_sha256,
            "counts": self.counts,
            "content_sha256": self.content_sha256,
            "by": self.by,
            "dry_run": self.dry_run,
        }


def _admin(store: Store, who: Viewer | str | None) -> Viewer:
    viewer = who if isinstance(who, Viewer) else scope_for(store, who)
    if viewer.is_system or viewer.role != "admin":
        raise PermissionDenied(
            f"{viewer.user_id} cannot erase",
            guidance="an erasure is an admin action (G1): --as ADMIN",
        )
    return viewer


def _addresses(
    store: Store, address: str | None, customer: str | None
) -> tuple[str, str, list[str]]:
    if (address is None) == (customer is None):
        raise MailopsError("name one person: an address or a customer", code="bad_erasure")
    if address is not None:
        a = address.strip().lower()
        if "@" not in a or a.startswith("@") or a.endswith("@") or "\n" in a:
            raise MailopsError(f"{address!r} is not an email address", code="bad_address")
        return "address", address_hash(a), [a]
    cid = str(customer).strip()
    found = erstore.customer_addresses(store, cid)
    if not found and not erstore.customer_exists(store, cid):
        raise MailopsError(f"no customer {cid!r}", code="unknown_customer")
    return "customer", address_hash(cid), found


def erase(
    store: Store,
    who: Viewer | str | None,
    *,
    address: str | None = None,
    customer: str | None = None,
    dry_run: bool = False,
    compact_file: bool = True,
) -> Erasure:
    """Erase ADDRESS or CUSTOMER (admins only). With DRY_RUN only count."""
    viewer = _admin(store, who)
    kind, target, addresses = _addresses(store, address, customer)
    mailbox_owned = erstore.mailbox_addresses(store) & set(addresses)
    if mailbox_owned:
        raise MailopsError(
            "that address is a connected mailbox of the CRM, not a customer's",
            code="erase_mailbox",
            guidance="remove or transfer the mailbox; erasure is for people outside the company",
        )
    customer_id = customer.strip() if customer else None
    plan = erstore.plan(store, addresses, customer_id)
    result = Erasure(kind, target, plan.counts(), plan.content_sha256(), viewer.user_id)
    if dry_run:
        return result
    with store.transaction():
        counts = erstore.remove(store, plan, addresses, customer_id)
        result.counts = counts
        result.receipt_id = erstore.write_receipt(
            store, kind, target, counts, result.content_sha256, viewer.user_id
        )
        erstore.block(store, [address_hash(a) for a in addresses], result.receipt_id)
        if customer_id is not None:
            erstore.block_customer(store, address_hash(customer_id), result.receipt_id)
    erstore.remove_blob_files(store, plan)
    if compact_file and store.path != ":memory:":
        compact(store)
        result.compacted = True
    return result


def compact(store: Store) -> None:
    """Rewrite the DuckDB file so deleted rows leave no bytes behind (free blocks keep them
    otherwise): copy the database into a fresh file beside it, then swap it in."""
    if store.lake is not None:  # D1: expire the lake's old snapshots and their files
        from mailops.store.lake import compact as compact_lake

        compact_lake(store)
        return
    path = Path(store.path)
    fresh = path.with_name(path.name + ".compact")
    for leftover in (fresh, Path(str(fresh) + ".wal")):
        leftover.unlink(missing_ok=True)
    mode = path.stat().st_mode & 0o777
    erstore.copy_database(store, str(fresh))
    store.release()
    os.chmod(fresh, mode)
    with open(fresh, "rb") as f:
        os.fsync(f.fileno())
    os.replace(fresh, path)
    Path(str(path) + ".wal").unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def receipts_json(store: Store) -> str:
    return json.dumps(erstore.receipts(store), default=str)
