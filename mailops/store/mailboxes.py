"""Mailbox rows: connection endpoints (never secrets), state and problems (C3, C4)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mailops.errors import MailopsError
from mailops.store import Store

if TYPE_CHECKING:
    import pandas as pd

STATES = ("connected", "problematic", "disconnected")


@dataclass
class Mailbox:
    id: int
    owner_user_id: str
    address: str
    provider: str
    auth_kind: str
    imap_host: str | None = None
    imap_port: int | None = None
    imap_security: str | None = None
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_security: str | None = None
    oauth_authority: str | None = None
    ca_file: str | None = None
    secret_ref: str | None = None
    state: str = "connected"
    problem_code: str | None = None
    problem_message: str | None = None
    problem_since: datetime | None = None
    transient_failures: int = 0
    capabilities: str | None = None
    sync_folders: str | None = None
    backfill_days: int | None = None
    connected_at: datetime | None = None
    disconnected_at: datetime | None = None
    last_sync_at: datetime | None = None
    last_good_sync_at: datetime | None = None
    created_at: datetime | None = None
    visibility: str | None = None  # P2: NULL = the company policy

    @property
    def folders(self) -> list[str] | None:
        return json.loads(self.sync_folders) if self.sync_folders else None


COLUMNS = [f.name for f in fields(Mailbox)]


def _row_to_mailbox(row: tuple[Any, ...]) -> Mailbox:
    values = dict(zip(COLUMNS, row, strict=True))
    return Mailbox(**values)


def insert(store: Store, **values: Any) -> Mailbox:
    values = {k: v for k, v in values.items() if v is not None}
    values["address"] = values["address"].strip().lower()
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown mailbox column(s): {unknown}")
    cols = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    new_id = store.scalar(
        f"INSERT INTO mailboxes ({cols}) VALUES ({marks}) RETURNING id", list(values.values())
    )
    return get(store, int(new_id))


def update(store: Store, mailbox_id: int, **values: Any) -> None:
    if not values:
        return
    sets = ", ".join(f"{k} = ?" for k in values)
    store.execute(f"UPDATE mailboxes SET {sets} WHERE id = ?", [*values.values(), mailbox_id])


def get(store: Store, mailbox_id: int) -> Mailbox:
    rows = store.rows(f"SELECT {', '.join(COLUMNS)} FROM mailboxes WHERE id = ?", [mailbox_id])
    if not rows:
        raise MailopsError(f"no mailbox with id {mailbox_id}", code="mailbox_not_found")
    return _row_to_mailbox(rows[0])


def many(store: Store, mailbox_ids: Sequence[int]) -> dict[int, Mailbox]:
    """The mailboxes of MAILBOX_IDS (the ones that exist) by id, in one query: a lake (D1)
    answers each query in tens of milliseconds, so a worker reads its batch at once."""
    if not mailbox_ids:
        return {}
    rows = store.rows(
        f"SELECT {', '.join(COLUMNS)} FROM mailboxes WHERE list_contains(?, id)",
        [[int(i) for i in mailbox_ids]],
    )
    return {mb.id: mb for mb in map(_row_to_mailbox, rows)}


def connected_choices(store: Store, owner: str) -> list[tuple[str, int]]:
    """(address, id) of OWNER's connected mailboxes: where he may send from."""
    rows = store.rows(
        "SELECT address, id FROM mailboxes WHERE owner_user_id = ? AND state = 'connected'"
        " ORDER BY address",
        [owner],
    )
    return [(r[0], int(r[1])) for r in rows]


def addresses_of_owner(store: Store, owner: str | None) -> set[str]:
    """Every address OWNER ever connected (any state)."""
    return {
        r[0] for r in store.rows("SELECT address FROM mailboxes WHERE owner_user_id = ?", [owner])
    }


def owner_of_mailbox(store: Store, mailbox_id: int) -> str | None:
    owner = store.scalar("SELECT owner_user_id FROM mailboxes WHERE id = ?", [mailbox_id])
    return None if owner is None else str(owner)


def find(store: Store, ref: str | int, *, include_disconnected: bool = False) -> Mailbox:
    """A mailbox by id or address (the newest live connection of that address)."""
    if isinstance(ref, int) or str(ref).isdigit():
        return get(store, int(ref))
    where = "" if include_disconnected else "AND state <> 'disconnected'"
    rows = store.rows(
        f"SELECT {', '.join(COLUMNS)} FROM mailboxes WHERE address = ? {where} ORDER BY id DESC LIMIT 1",
        [str(ref).strip().lower()],
    )
    if not rows:
        raise MailopsError(f"no connected mailbox {ref}", code="mailbox_not_found")
    return _row_to_mailbox(rows[0])


def all_mailboxes(
    store: Store, *, states: tuple[str, ...] = STATES, owner: str | None = None
) -> list[Mailbox]:
    sql = f"SELECT {', '.join(COLUMNS)} FROM mailboxes WHERE list_contains(?, state)"
    params: list[Any] = [list(states)]
    if owner:
        sql += " AND owner_user_id = ?"
        params.append(owner)
    return [_row_to_mailbox(r) for r in store.rows(sql + " ORDER BY id", params)]


def listing(store: Store, owner: str | None = None) -> pd.DataFrame:
    sql = (
        "SELECT id, owner_user_id, address, provider, auth_kind, state, problem_code, problem_message,"
        " problem_since, connected_at, last_sync_at, last_good_sync_at FROM mailboxes"
    )
    if owner:
        return store.query(sql + " WHERE owner_user_id = ? ORDER BY id", [owner])
    return store.query(sql + " ORDER BY id")


def ever_connected_addresses(store: Store) -> set[str]:
    """Every address that was ever a connected mailbox (S5), whatever its state now."""
    return {r[0] for r in store.rows("SELECT DISTINCT address FROM mailboxes")}


def set_state(
    store: Store,
    mailbox_id: int,
    state: str,
    *,
    code: str | None = None,
    message: str | None = None,
    actor: str | None = None,
) -> None:
    """Move a mailbox to STATE, recording the change in mailbox_events (history for R4)."""
    if state not in STATES:
        raise ValueError(state)
    with store.transaction():
        current = store.scalar("SELECT state FROM mailboxes WHERE id = ?", [mailbox_id])
        now = "now()::TIMESTAMP"
        if state == "problematic":
            store.execute(
                f"UPDATE mailboxes SET state = 'problematic', problem_code = ?, problem_message = ?,"
                f" problem_since = CASE WHEN state = 'problematic' AND problem_code = ? THEN problem_since ELSE {now} END"
                " WHERE id = ?",
                [code, message, code, mailbox_id],
            )
        elif state == "connected":
            store.execute(
                "UPDATE mailboxes SET state = 'connected', problem_code = NULL, problem_message = NULL,"
                " problem_since = NULL, transient_failures = 0 WHERE id = ?",
                [mailbox_id],
            )
        else:
            store.execute(
                f"UPDATE mailboxes SET state = 'disconnected', disconnected_at = {now} WHERE id = ?",
                [mailbox_id],
            )
        if current != state or state == "problematic":
            add_event(store, mailbox_id, current, state, code, message, actor)


def add_event(
    store: Store,
    mailbox_id: int,
    from_state: str | None,
    to_state: str,
    code: str | None,
    message: str | None,
    actor: str | None,
) -> None:
    """One row of a mailbox's history (C3, R4; C6 transfers)."""
    store.execute(
        "INSERT INTO mailbox_events (mailbox_id, from_state, to_state, code, message, actor_user_id)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [mailbox_id, from_state, to_state, code, message, actor],
    )


def live_with_address(store: Store, address: str) -> list[Mailbox]:
    """Every mailbox row of ADDRESS that is not disconnected (any owner)."""
    rows = store.rows(
        f"SELECT {', '.join(COLUMNS)} FROM mailboxes WHERE lower(address) = ?"
        " AND state <> 'disconnected' ORDER BY id",
        [address.strip().lower()],
    )
    return [_row_to_mailbox(r) for r in rows]
