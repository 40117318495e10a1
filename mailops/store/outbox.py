"""Templates, drafts and the outbox (E2, E3): the SQL of the send engine.

The outbox is the send engine's journal. A row is written ``queued`` with the complete raw
message and its fixed Message-ID *before* the first attempt; ``phase`` records how far the
last attempt got (``smtp`` = the SMTP transaction reached DATA, so the email may have been
accepted), which is what a retry after a crash reads before it decides anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from mailops.errors import MailopsError
from mailops.permissions import Viewer, visible
from mailops.store import Store

OUTBOX_STATES = ("queued", "sending", "sent", "failed", "delivery_unknown")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# -- templates --------------------------------------------------------------------------------
@dataclass
class Template:
    id: int
    name: str
    subject: str
    body_text: str | None = None
    body_html: str | None = None
    created_by: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


_TEMPLATE_COLS = [f.name for f in fields(Template)]


def save_template(
    store: Store,
    name: str,
    subject: str,
    *,
    body_text: str | None = None,
    body_html: str | None = None,
    created_by: str | None = None,
) -> Template:
    """Insert or replace the template called NAME."""
    with store.transaction():
        existing = store.scalar("SELECT id FROM templates WHERE name = ?", [name])
        if existing is None:
            store.execute(
                "INSERT INTO templates (name, subject, body_text, body_html, created_by)"
                " VALUES (?, ?, ?, ?, ?)",
                [name, subject, body_text, body_html, created_by],
            )
        else:
            store.execute(
                "UPDATE templates SET subject = ?, body_text = ?, body_html = ?,"
                " updated_at = ? WHERE id = ?",
                [subject, body_text, body_html, utcnow(), existing],
            )
    return get_template(store, name)


def find_template(store: Store, ref: str | int) -> Template | None:
    col = "id" if isinstance(ref, int) or str(ref).isdigit() else "name"
    value: Any = int(ref) if col == "id" else ref
    rows = store.rows(f"SELECT {', '.join(_TEMPLATE_COLS)} FROM templates WHERE {col} = ?", [value])
    return Template(*rows[0]) if rows else None


def get_template(store: Store, ref: str | int) -> Template:
    tpl = find_template(store, ref)
    if tpl is None:
        raise MailopsError(f"no template {ref!r}", code="template_not_found")
    return tpl


def templates_frame(store: Store) -> pd.DataFrame:
    return store.query(
        "SELECT id, name, subject, body_html IS NOT NULL AS rich, created_by, updated_at"
        " FROM templates ORDER BY name"
    )


def template_choices(store: Store) -> list[tuple[str, str]]:
    return [(r[0], r[0]) for r in store.rows("SELECT name FROM templates ORDER BY name")]


def delete_template(store: Store, ref: str | int) -> None:
    tpl = get_template(store, ref)
    store.execute("DELETE FROM templates WHERE id = ?", [tpl.id])


# -- drafts -----------------------------------------------------------------------------------
@dataclass
class Draft:
    id: int
    user_id: str
    mailbox_id: int | None = None
    customer_id: str | None = None
    deal_id: str | None = None
    cc_customer_ids: list[str] = field(default_factory=list)
    bcc_customer_ids: list[str] = field(default_factory=list)
    subject: str | None = None
    body_text: str | None = None
    body_html: str | None = None
    template_id: int | None = None
    reply_to_message_id: str | None = None
    reply_all: bool = False
    attachments: list[dict[str, Any]] = field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    sent_outbox_id: int | None = None


_DRAFT_COLS = [f.name for f in fields(Draft)]
DRAFT_EDITABLE = frozenset(_DRAFT_COLS) - {"id", "created_at", "updated_at", "sent_outbox_id"}


def _draft_values(values: dict[str, Any]) -> dict[str, Any]:
    unknown = set(values) - DRAFT_EDITABLE
    if unknown:
        raise ValueError(f"unknown draft field(s): {sorted(unknown)}")
    out = dict(values)
    if "attachments" in out:
        out["attachments"] = json.dumps(out["attachments"] or [])
    for key in ("cc_customer_ids", "bcc_customer_ids"):
        if key in out:
            out[key] = list(out[key] or [])
    return out


def _row_to_draft(row: tuple[Any, ...]) -> Draft:
    values = dict(zip(_DRAFT_COLS, row, strict=True))
    values["attachments"] = json.loads(values["attachments"]) if values["attachments"] else []
    values["cc_customer_ids"] = list(values["cc_customer_ids"] or [])
    values["bcc_customer_ids"] = list(values["bcc_customer_ids"] or [])
    values["reply_all"] = bool(values["reply_all"])
    return Draft(**values)


def insert_draft(store: Store, user_id: str, **values: Any) -> Draft:
    vals = _draft_values(values)
    vals["user_id"] = user_id
    cols = ", ".join(vals)
    marks = ", ".join("?" for _ in vals)
    new_id = store.scalar(
        f"INSERT INTO drafts ({cols}) VALUES ({marks}) RETURNING id", list(vals.values())
    )
    return get_draft(store, int(new_id))


def update_draft(store: Store, draft_id: int, **values: Any) -> Draft:
    vals = _draft_values(values)
    if vals:
        sets = ", ".join(f"{k} = ?" for k in vals)
        store.execute(
            f"UPDATE drafts SET {sets}, updated_at = ? WHERE id = ?",
            [*vals.values(), utcnow(), draft_id],
        )
    return get_draft(store, draft_id)


def get_draft(store: Store, draft_id: int) -> Draft:
    rows = store.rows(f"SELECT {', '.join(_DRAFT_COLS)} FROM drafts WHERE id = ?", [draft_id])
    if not rows:
        raise MailopsError(f"no draft {draft_id}", code="draft_not_found")
    return _row_to_draft(rows[0])


def drafts_frame(
    store: Store, user_id: str | None = None, *, viewer: Viewer, include_sent: bool = False
) -> pd.DataFrame:
    """VIEWER's drafts (P1: a draft is its author's; admin and SYSTEM see all)."""
    acc = visible(viewer, "draft", user="user_id")
    where = [acc.where]
    params: list[Any] = list(acc.params)
    if user_id:
        where.append("user_id = ?")
        params.append(user_id)
    if not include_sent:
        where.append("sent_outbox_id IS NULL")
    return store.query(
        "SELECT id, user_id, mailbox_id, customer_id, deal_id, subject, reply_to_message_id,"
        " updated_at, sent_outbox_id FROM drafts"
        f" WHERE {' AND '.join(where)} ORDER BY updated_at DESC, id DESC",
        params,
    )


def delete_draft(store: Store, draft_id: int) -> None:
    get_draft(store, draft_id)
    store.execute("DELETE FROM drafts WHERE id = ?", [draft_id])


def delete_unsent_draft(store: Store, draft_id: int) -> None:
    store.execute("DELETE FROM drafts WHERE id = ? AND sent_outbox_id IS NULL", [draft_id])


def mark_draft_sent(store: Store, draft_id: int, outbox_id: int) -> None:
    store.execute(
        "UPDATE drafts SET sent_outbox_id = ?, updated_at = ? WHERE id = ?",
        [outbox_id, utcnow(), draft_id],
    )


# -- outbox -----------------------------------------------------------------------------------
@dataclass
class OutboxItem:
    id: int
    user_id: str
    mailbox_id: int
    customer_ids: list[str]
    draft_id: int | None
    message_id_header: str
    raw: bytes
    envelope_from: str | None
    recipients: list[str]
    state: str
    attempts: int
    last_error: str | None
    created_at: datetime | None
    updated_at: datetime | None
    sent_at: datetime | None
    phase: str | None
    error_code: str | None
    subject: str | None
    deal_id: str | None
    activity_plan: list[list[Any]]
    sent_copy: str | None


_OUTBOX_COLS = [f.name for f in fields(OutboxItem)]


def _row_to_item(row: tuple[Any, ...]) -> OutboxItem:
    values = dict(zip(_OUTBOX_COLS, row, strict=True))
    values["raw"] = bytes(values["raw"])
    values["customer_ids"] = list(values["customer_ids"] or [])
    values["recipients"] = list(values["recipients"] or [])
    values["activity_plan"] = json.loads(values["activity_plan"] or "[]")
    return OutboxItem(**values)


def enqueue(
    store: Store,
    *,
    user_id: str,
    mailbox_id: int,
    message_id_header: str,
    raw: bytes,
    envelope_from: str,
    recipients: list[str],
    customer_ids: list[str],
    activity_plan: list[list[Any]],
    subject: str | None,
    deal_id: str | None = None,
    draft_id: int | None = None,
) -> OutboxItem:
    """A new ``queued`` outbox row (the Message-ID is UNIQUE: queuing twice is refused)."""
    if store.scalar("SELECT id FROM outbox WHERE message_id_header = ?", [message_id_header]):
        raise MailopsError(f"{message_id_header} is already in the outbox", code="outbox_duplicate")
    new_id = store.scalar(
        "INSERT INTO outbox (user_id, mailbox_id, customer_ids, draft_id, message_id_header, raw,"
        " envelope_from, recipients, state, phase, subject, deal_id, activity_plan)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', 'queued', ?, ?, ?) RETURNING id",
        [
            user_id,
            mailbox_id,
            customer_ids,
            draft_id,
            message_id_header,
            raw,
            envelope_from,
            recipients,
            subject,
            deal_id,
            json.dumps(activity_plan),
        ],
    )
    return get_item(store, int(new_id))


def get_item(store: Store, outbox_id: int) -> OutboxItem:
    rows = store.rows(f"SELECT {', '.join(_OUTBOX_COLS)} FROM outbox WHERE id = ?", [outbox_id])
    if not rows:
        raise MailopsError(f"no outbox entry {outbox_id}", code="outbox_not_found")
    return _row_to_item(rows[0])


def items(store: Store, states: tuple[str, ...] = OUTBOX_STATES) -> list[OutboxItem]:
    rows = store.rows(
        f"SELECT {', '.join(_OUTBOX_COLS)} FROM outbox WHERE list_contains(?, state) ORDER BY id",
        [list(states)],
    )
    return [_row_to_item(r) for r in rows]


def draft_for(store: Store, draft_id: int, *, viewer: Viewer) -> Draft:
    """One draft, when VIEWER may read it (its author, admin, SYSTEM)."""
    acc = visible(viewer, "draft", user="user_id")
    rows = store.rows(
        f"SELECT {', '.join(_DRAFT_COLS)} FROM drafts WHERE id = ? AND {acc.where}",
        [draft_id, *acc.params],
    )
    if not rows:
        raise MailopsError(f"no draft {draft_id}", code="draft_not_found")
    return _row_to_draft(rows[0])


def outbox_frame(
    store: Store, user_id: str | None = None, state: str | None = None, *, viewer: Viewer
) -> pd.DataFrame:
    """Outbox entries VIEWER may see (P1 scope of their senders); subjects as the sending
    mailbox's level allows (P2)."""
    acc = visible(viewer, "outbox", user="o.user_id", owner="m.owner_user_id", level="m.visibility")
    where, params = [acc.where], list(acc.params)
    if user_id:
        where.append("o.user_id = ?")
        params.append(user_id)
    if state:
        where.append("o.state = ?")
        params.append(state)
    return store.query(
        "SELECT o.id, o.state, o.phase, o.attempts, m.address AS mailbox, o.recipients,"
        f" {acc.subject('o.subject', 'subject')}, o.sent_copy, o.message_id_header, o.error_code, o.last_error, o.created_at,"
        " o.sent_at"
        " FROM outbox o LEFT JOIN mailboxes m ON m.id = o.mailbox_id"
        f" WHERE {' AND '.join(where)} ORDER BY o.id",
        params,
    )


def sent_with_subject(store: Store, mailbox_id: int, subject: str) -> int | None:
    oid = store.scalar(
        "SELECT id FROM outbox WHERE mailbox_id = ? AND subject = ? AND state = 'sent'"
        " ORDER BY id LIMIT 1",
        [mailbox_id, subject],
    )
    return None if oid is None else int(oid)


def set_error_code(store: Store, outbox_id: int, code: str) -> None:
    store.execute("UPDATE outbox SET error_code = ? WHERE id = ?", [code, outbox_id])


def save_attachment_blob(store: Store, digest: str, content: bytes) -> None:
    """A draft's attachment, content addressed like the synced ones (S10)."""
    store.execute(
        "INSERT INTO attachment_blobs (sha256, size, content) VALUES (?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        [digest, len(content), content],
    )


def attachment_blob(store: Store, digest: str) -> bytes | None:
    content = store.scalar("SELECT content FROM attachment_blobs WHERE sha256 = ?", [digest])
    return None if content is None else bytes(content)


def start_attempt(store: Store, outbox_id: int) -> None:
    """queued/failed -> sending; the attempt is counted before anything goes on the wire."""
    store.execute(
        "UPDATE outbox SET state = 'sending', phase = 'connect', attempts = attempts + 1,"
        " updated_at = ? WHERE id = ?",
        [utcnow(), outbox_id],
    )


def set_phase(store: Store, outbox_id: int, phase: str) -> None:
    store.execute(
        "UPDATE outbox SET phase = ?, updated_at = ? WHERE id = ?", [phase, utcnow(), outbox_id]
    )


def mark_sent(store: Store, outbox_id: int, *, sent_copy: str, note: str | None = None) -> None:
    store.execute(
        "UPDATE outbox SET state = 'sent', phase = 'done', sent_at = coalesce(sent_at, ?),"
        " sent_copy = ?, error_code = NULL, last_error = ?, updated_at = ? WHERE id = ?",
        [utcnow(), sent_copy, note, utcnow(), outbox_id],
    )


def mark_unknown(store: Store, outbox_id: int, *, message: str) -> None:
    """E3: the final dot was sent, no answer came: neither sent nor failed."""
    store.execute(
        "UPDATE outbox SET state = 'delivery_unknown', phase = 'data_terminator_sent',"
        " error_code = 'delivery_unknown', last_error = ?, updated_at = ? WHERE id = ?",
        [message, utcnow(), outbox_id],
    )


def mark_failed(store: Store, outbox_id: int, *, code: str, message: str, phase: str) -> None:
    store.execute(
        "UPDATE outbox SET state = 'failed', phase = ?, error_code = ?, last_error = ?,"
        " updated_at = ? WHERE id = ?",
        [phase, code, message, utcnow(), outbox_id],
    )
