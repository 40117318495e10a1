"""C4 probes of transient-problematic mailboxes: the SQL (``mailops.healing`` decides)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from mailops.store import Store

__all__ = ["Probe", "clear", "probes_for", "record"]


@dataclass(frozen=True)
class Probe:
    mailbox_id: int
    attempts: int
    last_probe_at: datetime | None
    next_probe_at: datetime
    last_code: str | None
    last_message: str | None


def probes_for(store: Store, mailbox_ids: Sequence[int]) -> dict[int, Probe]:
    if not mailbox_ids:
        return {}
    rows = store.rows(
        "SELECT mailbox_id, attempts, last_probe_at, next_probe_at, last_code, last_message"
        " FROM mailbox_probes WHERE list_contains(?, mailbox_id)",
        [list(mailbox_ids)],
    )
    return {int(r[0]): Probe(*r) for r in rows}


def record(
    store: Store,
    mailbox_id: int,
    *,
    attempts: int,
    at: datetime,
    next_at: datetime,
    code: str | None,
    message: str | None,
) -> None:
    store.execute(
        "INSERT INTO mailbox_probes (mailbox_id, attempts, last_probe_at, next_probe_at,"
        " last_code, last_message) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (mailbox_id) DO UPDATE"
        " SET attempts = excluded.attempts, last_probe_at = excluded.last_probe_at,"
        " next_probe_at = excluded.next_probe_at, last_code = excluded.last_code,"
        " last_message = excluded.last_message",
        [mailbox_id, attempts, at, next_at, code, message],
    )


def clear(store: Store, mailbox_id: int) -> None:
    store.execute("DELETE FROM mailbox_probes WHERE mailbox_id = ?", [mailbox_id])
