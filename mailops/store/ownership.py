"""C6: one owner per mailbox address; admin transfers; links made before the rule.

``address_owners`` has the address as its primary key, so two users connecting the same
address at the same moment cannot both win: the second insert fails inside the connect
transaction. Mailbox rows written without the connect flow (tests, old stores) count too:
the owner of an address without a row is the one user its mailboxes belong to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from mailops.store import Store

__all__ = [
    "CONFLICT",
    "Transfer",
    "claim",
    "conflicts",
    "open_conflicts_count",
    "owner_of",
    "record_transfer",
    "transfers",
]

CONFLICT = "\0conflict"  # owner_of() for an address linked to several users before C6


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def owner_of(store: Store, address: str) -> str | None:
    """The user the address is linked to; None when nobody; CONFLICT when several are
    (a double link found by migration 0040 and not yet resolved by a transfer)."""
    address = address.strip().lower()
    open_conflict = store.scalar(
        "SELECT count(*) FROM address_link_conflicts WHERE address = ? AND resolved_at IS NULL",
        [address],
    )
    if open_conflict:
        return CONFLICT
    owner = store.scalar("SELECT user_id FROM address_owners WHERE address = ?", [address])
    if owner is not None:
        return str(owner)
    users = [
        r[0]
        for r in store.rows(
            "SELECT DISTINCT owner_user_id FROM mailboxes WHERE lower(address) = ?", [address]
        )
    ]
    if len(users) > 1:
        return CONFLICT
    return users[0] if users else None


def claim(store: Store, address: str, user_id: str, *, by: str | None = None) -> bool:
    """Link ADDRESS to USER_ID unless it is linked to someone else; True when it is (now)
    USER_ID's. Call inside the connect transaction: the primary key settles a race."""
    address = address.strip().lower()
    current = owner_of(store, address)
    if current not in (None, user_id):
        return False
    store.execute(
        "INSERT INTO address_owners (address, user_id, since, by_user_id) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (address) DO NOTHING",
        [address, user_id, _now(), by or user_id],
    )
    return store.scalar("SELECT user_id FROM address_owners WHERE address = ?", [address]) == (
        user_id
    )


@dataclass(frozen=True)
class Transfer:
    id: int
    address: str
    from_user_id: str | None
    to_user_id: str
    by_user_id: str
    disconnected: list[int]


def record_transfer(
    store: Store,
    address: str,
    *,
    from_user_id: str | None,
    to_user_id: str,
    by_user_id: str,
    reason: str | None,
    disconnected: list[int],
) -> Transfer:
    """Write the transfer, move the address to TO_USER_ID, close any open conflict."""
    address = address.strip().lower()
    now = _now()
    tid = int(
        store.scalar(
            "INSERT INTO mailbox_transfers (address, from_user_id, to_user_id, by_user_id, reason,"
            " disconnected, transferred_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            [address, from_user_id, to_user_id, by_user_id, reason, disconnected, now],
        )
    )
    store.execute(
        "INSERT INTO address_owners (address, user_id, since, by_user_id) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (address) DO UPDATE SET user_id = excluded.user_id,"
        " since = excluded.since, by_user_id = excluded.by_user_id",
        [address, to_user_id, now, by_user_id],
    )
    store.execute(
        "UPDATE address_link_conflicts SET resolved_at = ?, resolved_by_transfer = ?"
        " WHERE address = ? AND resolved_at IS NULL",
        [now, tid, address],
    )
    return Transfer(tid, address, from_user_id, to_user_id, by_user_id, disconnected)


def conflicts(store: Store, *, include_resolved: bool = False) -> pd.DataFrame:
    """Addresses that were linked to more than one user (found by migration 0040)."""
    where = "" if include_resolved else " WHERE resolved_at IS NULL"
    return store.query(
        "SELECT address, users, mailbox_ids, found_at, resolved_at, resolved_by_transfer"
        f" FROM address_link_conflicts{where} ORDER BY address"
    )


def open_conflicts_count(store: Store) -> int:
    return int(
        store.scalar("SELECT count(*) FROM address_link_conflicts WHERE resolved_at IS NULL") or 0
    )


def transfers(store: Store, address: str | None = None) -> pd.DataFrame:
    sql = (
        "SELECT id, address, from_user_id, to_user_id, by_user_id, reason, disconnected, transferred_at"
        " FROM mailbox_transfers"
    )
    if address:
        return store.query(sql + " WHERE address = ? ORDER BY id", [address.strip().lower()])
    return store.query(sql + " ORDER BY id")
