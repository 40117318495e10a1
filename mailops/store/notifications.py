"""N1 notifications: who is told of new inbound customer mail, listing, marking read.

One row per (user, message) (a unique index): the same email seen again in another folder,
after a UIDVALIDITY change or by a resumed run notifies nobody twice. ``reason`` says why
this user: ``mailbox_owner`` (the mailbox it arrived in) or ``deal_owner`` (owner of the
activity's deal, or of the customer's deals when the activity names none).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from mailops.store import Store

__all__ = [
    "digest_rows",
    "mark_digested",
    "mark_message_read",
    "mark_read",
    "notification_frame",
    "notify_new_inbound",
    "unread_count",
]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def notify_new_inbound(
    store: Store,
    mailbox: Any,
    activities: Iterable[Any],
    arrived: Mapping[str, datetime | None],
    connected: datetime,
) -> int:
    """Notify the mailbox owner and the deal owners of every inbound customer email that
    arrived (INTERNALDATE) at or after the mailbox was connected; backfilled mail notifies
    nobody. ACTIVITIES are the batch's ``ActivityRow``s; call inside the batch transaction.
    Returns the number of notification rows written."""
    inbound = [
        a
        for a in activities
        if a.direction == "inbound"
        and (when := arrived.get(a.message_id)) is not None
        and when >= connected
    ]
    if not inbound:
        return 0
    inbound.sort(key=lambda a: (a.message_id, a.match_kind != "primary", a.customer_id))
    customers = sorted({a.customer_id for a in inbound})
    deals = store.rows(
        "SELECT dc.customer_id, d.id, d.owner_user_id FROM deal_customers dc"
        " JOIN deals d ON d.id = dc.deal_id"
        " WHERE list_contains(?, dc.customer_id) AND d.owner_user_id IS NOT NULL",
        [customers],
    )
    owner_of_deal = {deal: owner for _, deal, owner in deals}
    owners_of_customer: dict[str, set[str]] = {}
    for cust, _, owner in deals:
        owners_of_customer.setdefault(cust, set()).add(owner)
    rows: dict[tuple[str, str], tuple[str, int | None, str, str, str]] = {}
    for a in inbound:
        key = (mailbox.owner_user_id, a.message_id)
        rows.setdefault(key, (*key, mailbox.id, a.customer_id, "mailbox_owner"))  # type: ignore[arg-type]
    for a in inbound:
        if a.deal_id and a.deal_id in owner_of_deal:
            owners = {owner_of_deal[a.deal_id]}
        else:
            owners = owners_of_customer.get(a.customer_id, set())
        for owner in sorted(owners):
            rows.setdefault(
                (owner, a.message_id),
                (owner, a.message_id, mailbox.id, a.customer_id, "deal_owner"),
            )  # type: ignore[arg-type]
    values = list(rows.values())
    before = store.rows("SELECT count(*) FROM notifications")[0][0]
    store.executemany(
        "INSERT INTO notifications (user_id, message_id, mailbox_id, customer_id, reason)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        values,
    )
    return int(store.rows("SELECT count(*) FROM notifications")[0][0] - before)


def notification_frame(
    store: Store,
    users: Sequence[str] | None,
    *,
    unread: bool = False,
    limit: int | None = None,
) -> pd.DataFrame:
    """Notifications of USERS (None = everybody), unread first, then newest first."""
    cond = ["TRUE"]
    params: list[Any] = []
    if users is not None:
        cond.append("list_contains(?, n.user_id)")
        params.append(list(users))
    if unread:
        cond.append("n.read_at IS NULL")
    lim = f" LIMIT {int(limit)}" if limit else ""
    return store.query(
        "SELECT n.id, n.user_id, n.created_at, n.read_at IS NULL AS unread, n.reason,"
        " n.customer_id, coalesce(c.name, n.customer_id) AS customer, mb.address AS mailbox,"
        " m.from_addr, m.subject, m.sent_at, n.message_id"
        " FROM notifications n LEFT JOIN messages m ON m.id = n.message_id"
        " LEFT JOIN customers c ON c.id = n.customer_id"
        " LEFT JOIN mailboxes mb ON mb.id = n.mailbox_id"
        f" WHERE {' AND '.join(cond)}"
        f" ORDER BY n.read_at IS NULL DESC, n.created_at DESC, n.id DESC{lim}",
        params,
    )


def unread_count(store: Store, user_id: str) -> int:
    return int(
        store.scalar(
            "SELECT count(*) FROM notifications WHERE user_id = ? AND read_at IS NULL", [user_id]
        )
    )


def mark_read(store: Store, users: Sequence[str] | None, ids: Sequence[int] | None) -> int:
    """Mark IDS (None = all unread) of USERS (None = anybody's) read; returns how many."""
    cond = ["read_at IS NULL"]
    params: list[Any] = []
    if users is not None:
        cond.append("list_contains(?, user_id)")
        params.append(list(users))
    if ids is not None:
        cond.append("list_contains(?, id)")
        params.append([int(i) for i in ids])
    where = " AND ".join(cond)
    with store.transaction():
        n = int(store.scalar(f"SELECT count(*) FROM notifications WHERE {where}", params))
        store.execute(f"UPDATE notifications SET read_at = ? WHERE {where}", [_now(), *params])
    return n


def mark_message_read(store: Store, user_id: str, message_id: str) -> int:
    """USER_ID opened MESSAGE_ID: his notification of it (if any) is read."""
    rows = store.rows(
        "UPDATE notifications SET read_at = ? WHERE user_id = ? AND message_id = ?"
        " AND read_at IS NULL RETURNING id",
        [_now(), user_id, message_id],
    )
    return len(rows)


def digest_rows(store: Store, user_id: str) -> pd.DataFrame:
    """Unread notifications of USER_ID not yet sent in a digest, oldest first."""
    return store.query(
        "SELECT n.id, n.created_at, coalesce(c.name, n.customer_id) AS customer,"
        " m.from_addr, m.subject, m.sent_at, mb.address AS mailbox"
        " FROM notifications n LEFT JOIN messages m ON m.id = n.message_id"
        " LEFT JOIN customers c ON c.id = n.customer_id"
        " LEFT JOIN mailboxes mb ON mb.id = n.mailbox_id"
        " WHERE n.user_id = ? AND n.read_at IS NULL AND n.digest_at IS NULL"
        " ORDER BY n.created_at, n.id",
        [user_id],
    )


def mark_digested(store: Store, ids: Sequence[int]) -> None:
    if ids:
        store.execute(
            "UPDATE notifications SET digest_at = ? WHERE list_contains(?, id)",
            [_now(), [int(i) for i in ids]],
        )
