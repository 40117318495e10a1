"""A1: the SQL of a customer's timeline, one message and its attachments.

Every query takes the viewer's activity clause (``Viewer.activity_clause``, P1): a row is
shown only when the viewer may see that activity; bodies and attachments only when the
viewer reads bodies.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd

from mailops.permissions import Access, Viewer, activity_access, visible
from mailops.store import Store

__all__ = [
    "attachment_content",
    "attachments_of",
    "customer_matches",
    "mailboxes_behind",
    "message_row",
    "timeline_frame",
]

PREVIEW_CHARS = 80


def customer_matches(store: Store, ref: str) -> list[tuple[str, str | None]]:
    """Customers REF names: an id, an address (primary or additional, any period), or a
    name (exact, else a substring, case-insensitive). [(id, name)], best match first."""
    ref = ref.strip()
    for sql, params in (
        ("SELECT id, name FROM customers WHERE id = ?", [ref]),
        (
            "SELECT DISTINCT c.id, c.name FROM customers c JOIN customer_addresses a"
            " ON a.customer_id = c.id WHERE a.address = ? ORDER BY c.id",
            [ref.lower()],
        ),
        ("SELECT id, name FROM customers WHERE lower(name) = ? ORDER BY id", [ref.lower()]),
        (
            "SELECT id, name FROM customers WHERE name ILIKE ? ORDER BY name, id LIMIT 20",
            ["%" + ref.replace("%", r"\%").replace("_", r"\_") + "%"],
        ),
    ):
        rows = store.rows(sql, params)
        if rows:
            return [(r[0], r[1]) for r in rows]
    return []


def _access(viewer: Viewer) -> Access:
    return activity_access(viewer)


def _visible(viewer: Viewer) -> tuple[str, list[Any]]:
    acc = _access(viewer)
    return f"a.unlinked_at IS NULL AND {acc.where}", acc.params


def timeline_frame(
    store: Store, viewer: Viewer, customer_id: str, *, limit: int | None = None
) -> pd.DataFrame:
    """CUSTOMER_ID's emails both ways, newest first: when, direction, deal, mailbox,
    subject, preview (empty for a viewer who reads no bodies), attachments, message id,
    and whether the viewer has an unread notification for it."""
    vis, params = _visible(viewer)
    acc = _access(viewer)
    preview = (
        f"CASE WHEN {acc.body_ok} THEN"
        f" left(trim(regexp_replace(coalesce(m.body_text, ''), '\\s+', ' ', 'g')), {PREVIEW_CHARS})"
        " ELSE '' END"
    )
    lim = f" LIMIT {int(limit)}" if limit else ""
    return store.query(
        "SELECT a.occurred_at AS at, a.direction,"
        " coalesce(nullif(trim(coalesce(d.project, '') || ' ' || coalesce(d.unit, '')), ''), d.name, a.deal_id) AS deal,"
        f" mb.address AS mailbox, m.from_addr, {acc.subject('m.subject', 'subject')},"
        f" {preview} AS preview,"
        f" CASE WHEN {acc.body_ok} THEN (SELECT count(*) FROM attachments t"
        " WHERE t.message_id = m.id) ELSE 0 END AS attachments,"
        " EXISTS (SELECT 1 FROM notifications n WHERE n.message_id = m.id AND n.user_id = ?"
        "   AND n.read_at IS NULL) AS unread,"
        " m.id AS message_id, a.deal_id, a.mailbox_id"
        " FROM activities a JOIN messages m ON m.id = a.message_id"
        " LEFT JOIN customers c ON c.id = a.customer_id"
        " LEFT JOIN deals d ON d.id = a.deal_id"
        " LEFT JOIN mailboxes mb ON mb.id = a.mailbox_id"
        f" WHERE a.customer_id = ? AND {vis}"
        f" ORDER BY a.occurred_at DESC NULLS LAST, m.id{lim}",
        [viewer.user_id, customer_id, *params],
    )


def mailboxes_behind(
    store: Store, viewer: Viewer, customer_id: str
) -> list[tuple[int, datetime | None]]:
    """Connected mailboxes a timeline of CUSTOMER_ID is read from, as the viewer sees it:
    those holding the customer's activities and the viewer's own. [(id, last_sync_at)]."""
    acc = visible(viewer, "mailbox", owner="mb.owner_user_id")
    vis, params = acc.where, acc.params
    return [
        (int(r[0]), r[1])
        for r in store.rows(
            "SELECT mb.id, mb.last_sync_at FROM mailboxes mb WHERE mb.state = 'connected'"
            f" AND {vis} AND (mb.owner_user_id = ? OR mb.id IN"
            " (SELECT mailbox_id FROM activities WHERE customer_id = ?)) ORDER BY mb.id",
            [*params, viewer.user_id, customer_id],
        )
    ]


def message_row(store: Store, viewer: Viewer, message_id: str) -> dict[str, Any] | None:
    """The stored message if the viewer may see one of its activities, else None; with
    ``subject_ok`` / ``body_ok``: what the most open of those activities shows (P2)."""
    vis, params = _visible(viewer)
    acc = _access(viewer)
    df = store.query(
        f"SELECT m.*, bool_or({acc.subject_ok}) AS subject_ok, bool_or({acc.body_ok}) AS body_ok,"
        " list(DISTINCT a.customer_id ORDER BY a.customer_id) AS customer_ids,"
        " list(DISTINCT coalesce(c.name, a.customer_id)) AS customer_names,"
        " list(DISTINCT mb.address) FILTER (WHERE mb.address IS NOT NULL) AS mailboxes,"
        " min(a.direction) AS direction, min(a.deal_id) AS deal_id"
        " FROM messages m JOIN activities a ON a.message_id = m.id"
        " LEFT JOIN customers c ON c.id = a.customer_id"
        " LEFT JOIN mailboxes mb ON mb.id = a.mailbox_id"
        f" WHERE m.id = ? AND {vis} GROUP BY ALL",
        [message_id, *params],
    )
    if df.empty:
        return None
    return dict(df.iloc[0].to_dict())


def customers_by_recent_mail(store: Store, *, viewer: Viewer) -> list[tuple[str, str]]:
    """(id, name) of the customers VIEWER may look at -- those of an activity he may see,
    or that a user he sees owns -- the one with the newest email first (at most 500)."""
    acc = activity_access(viewer)
    own = visible(viewer, "customer", customer_owner="c.owner_user_id")
    rows = store.rows(
        "SELECT c.id, coalesce(c.name, c.id), max(a.occurred_at) AS last FROM customers c"
        " LEFT JOIN activities a ON a.customer_id = c.id AND a.unlinked_at IS NULL"
        " LEFT JOIN mailboxes mb ON mb.id = a.mailbox_id"
        f" WHERE (a.id IS NOT NULL AND {acc.where}) OR {own.where}"
        " GROUP BY ALL ORDER BY last DESC NULLS LAST, 2 LIMIT 500",
        [*acc.params, *own.params],
    )
    return [(r[0], r[1]) for r in rows]


def thread_of(store: Store, message_id: str) -> str | None:
    """The thread key of a message (R3: first References id, else In-Reply-To, else itself)."""
    value = store.scalar(
        'SELECT coalesce(m."references"[1], m.in_reply_to, m.id) FROM messages m WHERE m.id = ?',
        [message_id],
    )
    return None if value is None else str(value)


def oldest_good_sync(store: Store, mailbox_ids: list[int]) -> datetime | None:
    value = store.scalar(
        "SELECT min(last_good_sync_at) FROM mailboxes WHERE list_contains(?, id)", [mailbox_ids]
    )
    return value  # type: ignore[no-any-return]


def message_exists(store: Store, message_id: str) -> bool:
    return bool(store.scalar("SELECT count(*) FROM messages WHERE id = ?", [message_id]))


def attachments_of(store: Store, message_id: str) -> pd.DataFrame:
    return store.query(
        "SELECT part_index, filename, content_type, size, sha256, skipped_reason"
        " FROM attachments WHERE message_id = ? ORDER BY part_index",
        [message_id],
    )


def attachment_content(store: Store, message_id: str, part_index: int) -> bytes | None:
    from mailops.store import blobs

    sha = store.scalar(
        "SELECT sha256 FROM attachments WHERE message_id = ? AND part_index = ?",
        [message_id, part_index],
    )
    return blobs.attachment_bytes(store, sha) if sha else None
