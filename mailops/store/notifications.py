"""N1 notifications: who is told of new inbound customer mail, listing, marking read.

One row per (user, message) (a unique index): the same email seen again in another folder,
after a UIDVALIDITY change or by a resumed run notifies nobody twice. ``reason`` says why
this user: ``mailbox_owner`` (the mailbox it arrived in) or ``deal_owner`` (owner of the
activity's deal, or of the customer's deals when the activity names none).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mailops.permissions import Viewer, visible
from mailops.store import Store
from mailops.store.bulk import append

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "digest_rows",
    "mark_digested",
    "mark_message_read",
    "mark_read",
    "notification_frame",
    "notify_new_inbound",
    "unread_count",
    "visible_ids",
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
    cols = list(zip(*values, strict=True))
    append(
        store,
        "notifications",
        [
            ("user_id", "VARCHAR", cols[0]),
            ("message_id", "VARCHAR", cols[1]),
            ("mailbox_id", "BIGINT", cols[2]),
            ("customer_id", "VARCHAR", cols[3]),
            ("reason", "VARCHAR", cols[4]),
        ],
        conflict="ON CONFLICT DO NOTHING",
    )
    return int(store.rows("SELECT count(*) FROM notifications")[0][0] - before)


def _subject_access(viewer: Viewer) -> Any:
    # the subject of the message as the level of the mailbox it came through allows (P2)
    return visible(viewer, "mailbox", owner="mb.owner_user_id", level="mb.visibility")


def notification_frame(
    store: Store,
    *,
    viewer: Viewer,
    unread: bool = False,
    limit: int | None = None,
) -> pd.DataFrame:
    """The notifications VIEWER may see (P1: his own; a team manager his team's; admin and
    SYSTEM all), unread first, then newest first."""
    acc = visible(viewer, "notification", user="n.user_id")
    subj = _subject_access(viewer)
    cond = [acc.where]
    params: list[Any] = list(acc.params)
    if unread:
        cond.append("n.read_at IS NULL")
    lim = f" LIMIT {int(limit)}" if limit else ""
    return store.query(
        "SELECT n.id, n.user_id, n.created_at, n.read_at IS NULL AS unread, n.reason,"
        " n.customer_id, coalesce(c.name, n.customer_id) AS customer, mb.address AS mailbox,"
        f" m.from_addr, {subj.subject('m.subject', 'subject')}, m.sent_at, n.message_id"
        " FROM notifications n LEFT JOIN messages m ON m.id = n.message_id"
        " LEFT JOIN customers c ON c.id = n.customer_id"
        " LEFT JOIN mailboxes mb ON mb.id = n.mailbox_id"
        f" WHERE {' AND '.join(cond)}"
        f" ORDER BY n.read_at IS NULL DESC, n.created_at DESC, n.id DESC{lim}",
        params,
    )


def unread_count(store: Store, viewer: Viewer) -> int:
    """VIEWER's own unread notifications."""
    acc = visible(viewer, "notification", user="user_id")
    return int(
        store.scalar(
            "SELECT count(*) FROM notifications WHERE user_id = ? AND read_at IS NULL"
            f" AND {acc.where}",
            [viewer.user_id, *acc.params],
        )
    )


def visible_ids(store: Store, ids: Sequence[int], *, viewer: Viewer) -> set[int]:
    """Which of IDS VIEWER may mark read: his own (anybody's for SYSTEM)."""
    acc = visible(viewer, "notification", user="user_id")
    own = "" if viewer.is_system else " AND user_id = ?"
    extra = [] if not own else [viewer.user_id]
    return {
        int(r[0])
        for r in store.rows(
            f"SELECT id FROM notifications WHERE list_contains(?, id) AND {acc.where}{own}",
            [[int(i) for i in ids], *acc.params, *extra],
        )
    }


def mark_read(store: Store, viewer: Viewer, ids: Sequence[int] | None) -> int:
    """Mark IDS (None = all unread) of VIEWER's own notifications read (SYSTEM: anybody's);
    returns how many."""
    acc = visible(viewer, "notification", user="user_id")
    cond = ["read_at IS NULL", acc.where]
    params: list[Any] = list(acc.params)
    if not viewer.is_system:
        cond.append("user_id = ?")
        params.append(viewer.user_id)
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


def digest_rows(store: Store, viewer: Viewer) -> pd.DataFrame:
    """VIEWER's own unread notifications not yet sent in a digest, oldest first; subjects
    as the mailboxes' levels allow (a digest lists customers and subjects, never bodies)."""
    acc = visible(viewer, "notification", user="n.user_id")
    subj = _subject_access(viewer)
    return store.query(
        "SELECT n.id, n.created_at, coalesce(c.name, n.customer_id) AS customer,"
        f" m.from_addr, {subj.subject('m.subject', 'subject')}, m.sent_at, mb.address AS mailbox"
        " FROM notifications n LEFT JOIN messages m ON m.id = n.message_id"
        " LEFT JOIN customers c ON c.id = n.customer_id"
        " LEFT JOIN mailboxes mb ON mb.id = n.mailbox_id"
        f" WHERE n.user_id = ? AND {acc.where} AND n.read_at IS NULL AND n.digest_at IS NULL"
        " ORDER BY n.created_at, n.id",
        [viewer.user_id, *acc.params],
    )


def mark_digested(store: Store, ids: Sequence[int]) -> None:
    if ids:
        store.execute(
            "UPDATE notifications SET digest_at = ? WHERE list_contains(?, id)",
            [_now(), [int(i) for i in ids]],
        )
