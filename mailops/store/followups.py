"""F1: the SQL of the follow-up assistant -- last message per thread, a thread's own
messages, the suggestion log and its outcomes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from mailops.permissions import Viewer, activity_access
from mailops.store import Store

__all__ = [
    "insert_suggestion",
    "last_per_thread",
    "decided_pending",
    "outcomes_by_message",
    "set_outcome",
    "suggestion_frame",
    "thread_messages",
]

THREAD = 'coalesce(m."references"[1], m.in_reply_to, m.id)'  # R3's thread definition

#: A suggestion's outcome as its draft tells it now (what ``refresh_outcomes`` records):
#: the draft gone = discarded; sent with the suggested subject and body = sent_as_is; sent
#: after a change = edited. Needs ``s`` (followup_suggestions) LEFT JOIN ``d`` (drafts).
LIVE_OUTCOME = (
    "CASE WHEN s.outcome <> 'pending' THEN s.outcome"
    " WHEN s.draft_id IS NOT NULL AND d.id IS NULL THEN 'discarded'"
    " WHEN d.sent_outbox_id IS NOT NULL THEN CASE WHEN sha256(coalesce(d.subject, '') || chr(10)"
    " || coalesce(d.body_text, '')) = s.body_sha256 THEN 'sent_as_is' ELSE 'edited' END"
    " ELSE 'pending' END"
)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def last_per_thread(store: Store, viewer: Any) -> pd.DataFrame:
    """The latest message of every (customer, thread) the viewer may see (P1)."""
    vis, params = viewer.activity_clause("a.user_id", "c.owner_user_id")
    return store.query(
        "SELECT * EXCLUDE (rn) FROM ("
        " SELECT a.customer_id, coalesce(c.name, a.customer_id) AS customer, c.owner_user_id,"
        "  a.user_id, a.mailbox_id, coalesce(a.deal_id, (SELECT min(dc.deal_id) FROM deal_customers dc"
        "   WHERE dc.customer_id = a.customer_id)) AS deal_id, a.direction, a.occurred_at,"
        f"  a.message_id, m.subject, {THREAD} AS thread,"
        "  row_number() OVER (PARTITION BY a.customer_id, "
        f"   {THREAD} ORDER BY a.occurred_at DESC, a.direction DESC) AS rn"
        " FROM activities a JOIN messages m ON m.id = a.message_id"
        " LEFT JOIN customers c ON c.id = a.customer_id"
        " WHERE a.unlinked_at IS NULL AND a.occurred_at IS NOT NULL"
        f"  AND coalesce(a.match_kind, '') <> 'co_customer' AND {vis}"
        ") WHERE rn = 1 ORDER BY occurred_at",
        params,
    )


def thread_messages(
    store: Store, customer_id: str, thread: str, limit: int = 8, *, viewer: Viewer
) -> pd.DataFrame:
    """The thread's own messages with this customer that VIEWER may see, oldest first (the
    newest LIMIT); subject and body as the mailboxes' levels allow (P2)."""
    acc = activity_access(viewer)
    return store.query(
        "SELECT * FROM (SELECT a.occurred_at, a.direction, m.from_addr, m.from_name,"
        f" {acc.subject('m.subject', 'subject')}, {acc.body('m.body_text', 'body_text')},"
        " m.id AS message_id"
        " FROM activities a JOIN messages m ON m.id = a.message_id"
        " LEFT JOIN customers c ON c.id = a.customer_id"
        " LEFT JOIN mailboxes mb ON mb.id = a.mailbox_id"
        f" WHERE a.customer_id = ? AND {THREAD} = ? AND a.unlinked_at IS NULL AND {acc.where}"
        " ORDER BY a.occurred_at DESC LIMIT ?) ORDER BY occurred_at",
        [customer_id, thread, *acc.params, int(limit)],
    )


def suggestion_row(store: Store, suggestion_id: int) -> list[tuple[Any, ...]]:
    return store.rows(
        "SELECT user_id, draft_id, outcome FROM followup_suggestions WHERE id = ?", [suggestion_id]
    )


def insert_suggestion(store: Store, **values: Any) -> int:
    cols = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    rows = store.rows(
        f"INSERT INTO followup_suggestions ({cols}) VALUES ({marks}) RETURNING id",
        list(values.values()),
    )
    return int(rows[0][0])


def decided_pending(store: Store) -> list[tuple[int, str]]:
    """(id, outcome) of suggestions logged as pending whose draft has been decided since."""
    return [
        (int(i), str(o))
        for i, o in store.rows(
            f"SELECT s.id, {LIVE_OUTCOME} AS outcome FROM followup_suggestions s"
            " LEFT JOIN drafts d ON d.id = s.draft_id WHERE s.outcome = 'pending'"
        )
        if o != "pending"
    ]


def outcomes_by_message(store: Store) -> pd.DataFrame:
    """The latest suggestion per answered message and its outcome now."""
    return store.query(
        f"SELECT s.last_message_id, max(s.id) AS suggestion_id, arg_max({LIVE_OUTCOME}, s.id) AS outcome"
        " FROM followup_suggestions s LEFT JOIN drafts d ON d.id = s.draft_id GROUP BY 1"
    )


def set_outcome(store: Store, suggestion_id: int, outcome: str) -> None:
    store.execute(
        "UPDATE followup_suggestions SET outcome = ?, outcome_at = ? WHERE id = ?",
        [outcome, _now(), int(suggestion_id)],
    )


def suggestion_frame(store: Store, users: Sequence[str] | None) -> pd.DataFrame:
    cond, params = ("TRUE", []) if users is None else ("list_contains(?, s.user_id)", [list(users)])
    return store.query(
        "SELECT s.id, s.created_at, s.user_id, s.customer_id, coalesce(c.name, s.customer_id) AS customer,"
        " s.deal_id, s.kind, s.waiting_since, s.language, s.model, s.draft_id, s.subject,"
        f" {LIVE_OUTCOME} AS outcome, s.outcome_at, s.thread, s.last_message_id"
        " FROM followup_suggestions s LEFT JOIN customers c ON c.id = s.customer_id"
        " LEFT JOIN drafts d ON d.id = s.draft_id"
        f" WHERE {cond} ORDER BY s.created_at DESC, s.id DESC",
        params,
    )
