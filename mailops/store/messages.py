"""Messages, their places, raw bytes, attachments and customer activities (S4, S7, S8, S10).

Every write is one bulk append per table (``store.bulk.append``: no pyarrow, no bound
parameters), with ``ON CONFLICT DO NOTHING`` where a key may exist already (raw bytes and
attachment contents by sha256, places, activities, notifications): saving the same message
twice, from two folders, two mailboxes or a resumed run, adds nothing (S8, S12). Messages
and their attachment rows are inserted only after ``existing_ids`` in the same transaction,
so on a DuckDB file (one writing process) they append without it. Callers wrap a batch in ``store.transaction()`` together with
their checkpoint.

The send engine records an outbound email at send time with ONE call::

    record_message(store, raw, direction="outbound", mailbox=mb, customers=["c-1"], deal_id="d-7")

It uses the same Message-ID normalisation and identity as the sync, so when the sync later
sees the copy in the Sent folder it only adds a place (and no second activity).

Identity (S13, ``resolve_identities``): a message's id is its normalised Message-ID; a
second message with the same Message-ID but another content fingerprint (From, Date,
Subject, decoded body: ``parse.content_fingerprint``) is stored as another message under
``<message-id>#<first 16 hex of its fingerprint>``; without a usable Message-ID the id is
``sha256:<fingerprint>``. The same content seen again (another folder, mailbox, a Bcc or
Received header more) is "linked": one row, one more place (S8).
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from mailops.parse import ParsedMessage, parse_message, usable_message_id
from mailops.permissions import Viewer, activity_access, visible
from mailops.safe_html import sanitize_html
from mailops.store import Store, blobs
from mailops.store.bulk import Column, append

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ActivityRow",
    "PlaceRow",
    "add_activities",
    "add_notifications",
    "add_places",
    "customer_activities",
    "existing_ids",
    "get_message",
    "html_for_display",
    "message_places",
    "raw_bytes",
    "raw_bytes_unchecked",
    "record_message",
    "rekey_identities",
    "refresh_identities",
    "resolve_identities",
    "save_messages",
    "unlink_activity",
]

log = logging.getLogger(__name__)

DEFAULT_ATTACHMENT_MAX = 10 * 1024 * 1024


@dataclass(frozen=True)
class PlaceRow:
    message_id: str
    mailbox_id: int
    folder: str
    uidvalidity: int
    uid: int
    flags: str | None = None
    internaldate: datetime | None = None


@dataclass(frozen=True)
class ActivityRow:
    message_id: str
    customer_id: str
    mailbox_id: int | None
    user_id: str | None
    direction: str  # inbound | outbound
    occurred_at: datetime | None
    match_kind: str | None = "primary"  # primary | co_customer | sent
    deal_id: str | None = None


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _insert(
    store: Store, table: str, columns: list[Column], conflict: str = "ON CONFLICT DO NOTHING"
) -> int:
    return append(store, table, columns, conflict=conflict)


def existing_ids(store: Store, ids: Iterable[str]) -> set[str]:
    """Which of IDS are already stored messages."""
    wanted = list(dict.fromkeys(i for i in ids if i))
    if not wanted:
        return set()
    rows = store.rows(
        "SELECT m.id FROM messages m JOIN (SELECT unnest(?::VARCHAR[]) AS id) w ON m.id = w.id",
        [wanted],
    )
    return {r[0] for r in rows}


def save_messages(
    store: Store,
    batch: Sequence[tuple[ParsedMessage, bytes | blobs.BlobRef]],
    *,
    attachment_max_bytes: int = DEFAULT_ATTACHMENT_MAX,
) -> set[str]:
    """Store parsed messages with their raw bytes and attachments; return the ids that are new.

    Idempotent on the message id; attachments larger than ``attachment_max_bytes`` are
    recorded with ``skipped_reason='too_large'`` and no content (S10).
    """
    if not batch:
        return set()
    with store.transaction():
        resolve_identities(store, [p for p, _ in batch])
        unique: dict[str, tuple[ParsedMessage, bytes | blobs.BlobRef]] = {}
        for parsed, raw in batch:
            unique.setdefault(parsed.key, (parsed, raw))
        new = set(unique) - existing_ids(store, unique)
        if not new:
            return set()
        items = [unique[k] for k in unique if k in new]
        now = _now()
        msgs: list[Column] = [
            ("id", "VARCHAR", [p.key for p, _ in items]),
            ("message_id_header", "VARCHAR", [p.headers.message_id_header for p, _ in items]),
            ("subject", "VARCHAR", [p.headers.subject for p, _ in items]),
            ("from_addr", "VARCHAR", [p.headers.from_addr for p, _ in items]),
            ("from_name", "VARCHAR", [p.headers.from_name for p, _ in items]),
            ("to_addrs", "VARCHAR[]", [p.headers.to_addrs for p, _ in items]),
            ("cc_addrs", "VARCHAR[]", [p.headers.cc_addrs for p, _ in items]),
            ("sent_at", "TIMESTAMP", [p.headers.date for p, _ in items]),
            ("in_reply_to", "VARCHAR", [p.headers.in_reply_to for p, _ in items]),
            ("references", "VARCHAR[]", [p.headers.references for p, _ in items]),
            ("body_text", "VARCHAR", [p.body_text for p, _ in items]),
            ("body_html", "VARCHAR", [p.body_html for p, _ in items]),
            ("raw_sha256", "VARCHAR", [p.raw_sha256 for p, _ in items]),
            ("raw_size", "BIGINT", [p.raw_size for p, _ in items]),
            ("parse_warnings", "VARCHAR[]", [p.warnings for p, _ in items]),
            ("has_attachments", "BOOLEAN", [bool(p.attachments) for p, _ in items]),
            ("first_seen_at", "TIMESTAMP", [now] * len(items)),
            ("message_id", "VARCHAR", [p.headers.message_id for p, _ in items]),
            ("content_fp", "VARCHAR", [p.content_fp or None for p, _ in items]),
        ]
        # new keys (checked above, in this transaction: one writing process per file); a
        # lake has many writers and no enforced keys: its MERGE stays the guard there
        fresh = "" if store.dialect is None else "ON CONFLICT DO NOTHING"
        _insert(store, "messages", msgs, conflict=fresh)
        raws: dict[str, blobs.Content] = {}
        for p, raw in items:
            raws.setdefault(p.raw_sha256, raw)
        _insert(store, "message_raw", blobs.raw_columns(store, raws))  # large ones: blob folder
        att_rows: list[
            tuple[str, int, str | None, str, int, str | None, str | None, str | None]
        ] = []
        contents: dict[str, blobs.Content] = {}
        for p, _ in items:
            for a in p.attachments:
                row = (p.key, a.part_index, a.filename, a.content_type, a.size)
                if a.size > attachment_max_bytes:
                    att_rows.append((*row, None, "too_large", a.content_id))
                    continue
                digest = a.sha256
                contents.setdefault(digest, getattr(a, "blob", None) or a.content)
                att_rows.append((*row, digest, None, a.content_id))
        if att_rows:
            cols = list(zip(*att_rows, strict=True))
            _insert(
                store,
                "attachments",
                [
                    ("message_id", "VARCHAR", cols[0]),
                    ("part_index", "INTEGER", cols[1]),
                    ("filename", "VARCHAR", cols[2]),
                    ("content_type", "VARCHAR", cols[3]),
                    ("size", "BIGINT", cols[4]),
                    ("sha256", "VARCHAR", cols[5]),
                    ("skipped_reason", "VARCHAR", cols[6]),
                    ("content_id", "VARCHAR", cols[7]),
                ],
                conflict=fresh,  # (message_id, part_index) of new messages only
            )
        if contents:
            _insert(store, "attachment_blobs", blobs.attachment_columns(store, contents))
    return new


def add_places(store: Store, rows: Sequence[PlaceRow]) -> int:
    """Link messages to (mailbox, folder, uidvalidity, uid); known places are ignored (the
    send engine records its Sent copy's place from APPENDUID before the sync sees it)."""
    unique = {(r.mailbox_id, r.folder, r.uidvalidity, r.uid): r for r in rows}
    if not unique:
        return 0
    rs = list(unique.values())
    now = _now()
    return _insert(
        store,
        "message_places",
        [
            ("message_id", "VARCHAR", [r.message_id for r in rs]),
            ("mailbox_id", "BIGINT", [r.mailbox_id for r in rs]),
            ("folder", "VARCHAR", [r.folder for r in rs]),
            ("uidvalidity", "BIGINT", [r.uidvalidity for r in rs]),
            ("uid", "BIGINT", [r.uid for r in rs]),
            ("flags", "VARCHAR", [r.flags for r in rs]),
            ("internaldate", "TIMESTAMP", [r.internaldate for r in rs]),
            ("seen_at", "TIMESTAMP", [now] * len(rs)),
        ],
    )


def add_activities(store: Store, rows: Sequence[ActivityRow]) -> int:
    """Customer activities; one per (message, customer), the first one seen wins."""
    unique: dict[tuple[str, str], ActivityRow] = {}
    for r in rows:
        unique.setdefault((r.message_id, r.customer_id), r)
    if not unique:
        return 0
    rs = list(unique.values())
    now = _now()
    return _insert(
        store,
        "activities",
        [
            ("message_id", "VARCHAR", [r.message_id for r in rs]),
            ("customer_id", "VARCHAR", [r.customer_id for r in rs]),
            ("mailbox_id", "BIGINT", [r.mailbox_id for r in rs]),
            ("user_id", "VARCHAR", [r.user_id for r in rs]),
            ("direction", "VARCHAR", [r.direction for r in rs]),
            ("occurred_at", "TIMESTAMP", [r.occurred_at for r in rs]),
            ("match_kind", "VARCHAR", [r.match_kind for r in rs]),
            ("deal_id", "VARCHAR", [r.deal_id for r in rs]),
            ("created_at", "TIMESTAMP", [now] * len(rs)),
        ],
    )


def add_notifications(store: Store, rows: Sequence[tuple[str, int | None, str, str]]) -> int:
    """N1: (user_id, mailbox_id, message_id, customer_id) rows for new inbound customer mail."""
    unique = list(dict.fromkeys(rows))
    if not unique:
        return 0
    cols = list(zip(*unique, strict=True))
    return _insert(
        store,
        "notifications",
        [
            ("user_id", "VARCHAR", cols[0]),
            ("mailbox_id", "BIGINT", cols[1]),
            ("message_id", "VARCHAR", cols[2]),
            ("customer_id", "VARCHAR", cols[3]),
        ],
    )


def record_message(
    store: Store,
    raw: bytes,
    *,
    direction: str,
    mailbox: Any,
    customers: Iterable[str | tuple[str, str | None, str | None]] = (),
    deal_id: str | None = None,
    folder: str | None = None,
    uidvalidity: int | None = None,
    uid: int | None = None,
    occurred_at: datetime | None = None,
    match_kind: str = "sent",
    attachment_max_bytes: int = DEFAULT_ATTACHMENT_MAX,
) -> str:
    """Store one message (e.g. just sent) with its activities, in one transaction.

    ``customers`` holds customer ids, or ``(customer_id, match_kind, deal_id)`` triples.
    ``mailbox`` is a ``Mailbox`` (its id and owner are used). A place is added only when
    the folder/uidvalidity/uid are known (e.g. from APPENDUID). Returns the message id.
    """
    parsed = parse_message(raw)
    when = occurred_at or parsed.headers.date or _now()
    with store.transaction():
        resolve_identities(store, [parsed])  # S13: the key the activities point to
        acts = []
        for c in customers:
            cid, kind, deal = (c, match_kind, deal_id) if isinstance(c, str) else c
            acts.append(
                ActivityRow(
                    parsed.key,
                    cid,
                    getattr(mailbox, "id", None),
                    getattr(mailbox, "owner_user_id", None),
                    direction,
                    when,
                    kind or match_kind,
                    deal if deal is not None else deal_id,
                )
            )
        save_messages(store, [(parsed, raw)], attachment_max_bytes=attachment_max_bytes)
        if folder is not None and uidvalidity is not None and uid is not None:
            add_places(store, [PlaceRow(parsed.key, mailbox.id, folder, uidvalidity, uid)])
        add_activities(store, acts)
    return parsed.key


def unlink_activity(
    store: Store, message_id: str, customer_id: str, *, by: str | None = None
) -> bool:
    """S9: hide a stored message from a customer's activities. The row is kept (audit) and a
    later sync does not link it again (activities are unique per message and customer)."""
    n = store.scalar(
        "SELECT count(*) FROM activities WHERE message_id = ? AND customer_id = ? AND unlinked_at IS NULL",
        [message_id, customer_id],
    )
    if n:
        store.execute(
            "UPDATE activities SET unlinked_at = ?, unlinked_by = ? WHERE message_id = ? AND customer_id = ?",
            [_now(), by, message_id, customer_id],
        )
    return bool(n)


def relink_activity(store: Store, message_id: str, customer_id: str) -> bool:
    """S9: undo an unlink (an admin's decision, recorded by the caller)."""
    n = store.scalar(
        "SELECT count(*) FROM activities WHERE message_id = ? AND customer_id = ?"
        " AND unlinked_at IS NOT NULL",
        [message_id, customer_id],
    )
    if n:
        store.execute(
            "UPDATE activities SET unlinked_at = NULL, unlinked_by = NULL"
            " WHERE message_id = ? AND customer_id = ?",
            [message_id, customer_id],
        )
    return bool(n)


def record_link_change(
    store: Store,
    message_id: str,
    customer_id: str,
    action: str,
    by: str,
    reason: str | None = None,
) -> None:
    store.execute(
        "INSERT INTO link_changes (message_id, customer_id, action, by_user_id, reason, changed_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [message_id, customer_id, action, by, reason, _now()],
    )


def link_changes(store: Store, message_id: str) -> pd.DataFrame:
    """The unlinks and relinks of one message (the explain paragraph reads them)."""
    return store.query(
        "SELECT customer_id, action, by_user_id, reason, changed_at FROM link_changes"
        " WHERE message_id = ? ORDER BY id",
        [message_id],
    )


def message_activities(store: Store, message_id: str, *, viewer: Viewer) -> pd.DataFrame:
    """The activities of one message VIEWER may see (unlinked ones included): customer,
    match kind, deal, mailbox, when unlinked."""
    acc = activity_access(viewer)
    return store.query(
        "SELECT a.customer_id, a.match_kind, a.deal_id, a.mailbox_id, a.direction, a.unlinked_at"
        " FROM activities a LEFT JOIN customers c ON c.id = a.customer_id"
        " LEFT JOIN mailboxes mb ON mb.id = a.mailbox_id"
        f" WHERE a.message_id = ? AND {acc.where} ORDER BY a.customer_id",
        [message_id, *acc.params],
    )


def customer_activities(
    store: Store, customer_id: str, *, viewer: Viewer, include_unlinked: bool = False
) -> pd.DataFrame:
    """A customer's emails VIEWER may see, newest first (S4); unlinked ones (S9) only on
    request. Subjects the mailbox's level hides are NULL; ``shown`` says what the row shows."""
    acc = activity_access(viewer)
    where = "" if include_unlinked else "AND a.unlinked_at IS NULL"
    return store.query(
        "SELECT a.occurred_at, a.direction, a.match_kind, a.deal_id, a.mailbox_id, a.user_id,"
        f" m.id AS message_id, {acc.subject('m.subject', 'subject')}, m.from_addr, m.to_addrs,"
        f" m.cc_addrs, m.sent_at, {acc.body('m.has_attachments', 'has_attachments')},"
        f" a.unlinked_at, {acc.levels()}"
        " FROM activities a JOIN messages m ON m.id = a.message_id"
        " LEFT JOIN customers c ON c.id = a.customer_id"
        " LEFT JOIN mailboxes mb ON mb.id = a.mailbox_id"
        f" WHERE a.customer_id = ? {where} AND {acc.where}"
        " ORDER BY a.occurred_at DESC NULLS LAST, m.id",
        [customer_id, *acc.params],
    )


def newest_inbound_from_customer(
    store: Store, mailbox_id: int, *, viewer: Viewer
) -> tuple[str, str] | None:
    """(message id, customer id) of the mailbox's newest inbound email a customer wrote from
    his primary address, among what VIEWER may see."""
    acc = activity_access(viewer)
    rows = store.rows(
        "SELECT a.message_id, a.customer_id FROM activities a"
        " JOIN customer_addresses ca ON ca.customer_id = a.customer_id AND ca.is_primary"
        "   AND ca.valid_to IS NULL"
        " JOIN messages m ON m.id = a.message_id AND m.from_addr = ca.address"
        " LEFT JOIN customers c ON c.id = a.customer_id"
        " LEFT JOIN mailboxes mb ON mb.id = a.mailbox_id"
        " WHERE a.mailbox_id = ? AND a.direction = 'inbound' AND a.unlinked_at IS NULL"
        f" AND {acc.where} ORDER BY a.occurred_at DESC NULLS LAST LIMIT 1",
        [mailbox_id, *acc.params],
    )
    return (rows[0][0], rows[0][1]) if rows else None


def _message_access(store: Store, message_id: str, viewer: Viewer) -> tuple[bool, bool] | None:
    """(subject_ok, body_ok) for the most open way VIEWER reaches the message -- through a
    visible activity or a place in a visible mailbox; None when he cannot reach it."""
    act = activity_access(viewer)
    place = visible(viewer, "mailbox", owner="mb.owner_user_id", level="mb.visibility")
    row = store.rows(
        f"SELECT bool_or(s), bool_or(b) FROM ("
        f" SELECT {act.subject_ok} AS s, {act.body_ok} AS b FROM activities a"
        " LEFT JOIN customers c ON c.id = a.customer_id"
        " LEFT JOIN mailboxes mb ON mb.id = a.mailbox_id"
        f" WHERE a.message_id = ? AND a.unlinked_at IS NULL AND {act.where}"
        f" UNION ALL SELECT {place.subject_ok}, {place.body_ok} FROM message_places p"
        " JOIN mailboxes mb ON mb.id = p.mailbox_id"
        f" WHERE p.message_id = ? AND {place.where})",
        [message_id, *act.params, message_id, *place.params],
    )
    if not row or row[0][0] is None:
        return None
    return bool(row[0][0]), bool(row[0][1])


_HEADER_ONLY = ("subject",)  # hidden at level metadata
_BODY_ONLY = ("body_text", "body_html", "has_attachments", "raw_sha256", "raw_size")


def get_message(store: Store, message_id: str, *, viewer: Viewer) -> dict[str, Any] | None:
    """A stored message as VIEWER may see it (P1: None when he may not see it at all; P2:
    the body fields are None unless he may read it, the subject None at level metadata).
    ``shown`` says which: everything / subject / metadata."""
    access = _message_access(store, message_id, viewer)
    if access is None:
        return None
    df = store.query("SELECT * FROM messages WHERE id = ?", [message_id])
    if df.empty:
        return None
    out = dict(df.iloc[0].to_dict())
    subject_ok, body_ok = access
    for col in _BODY_ONLY if not body_ok else ():
        out[col] = None
    for col in _HEADER_ONLY if not subject_ok else ():
        out[col] = None
    out["shown"] = "everything" if body_ok else ("subject" if subject_ok else "metadata")
    return out


def message_places(store: Store, message_id: str, *, viewer: Viewer) -> pd.DataFrame:
    acc = visible(viewer, "mailbox", owner="mb.owner_user_id", level="mb.visibility")
    return store.query(
        "SELECT p.mailbox_id, p.folder, p.uidvalidity, p.uid, p.flags, p.internaldate, p.seen_at"
        " FROM message_places p JOIN mailboxes mb ON mb.id = p.mailbox_id"
        f" WHERE p.message_id = ? AND {acc.where}"
        " ORDER BY p.mailbox_id, p.folder, p.uidvalidity, p.uid",
        [message_id, *acc.params],
    )


def raw_bytes(store: Store, message_id: str, *, viewer: Viewer) -> bytes | None:
    """The raw bytes of a stored message, when VIEWER may read its body (P2)."""
    access = _message_access(store, message_id, viewer)
    if access is None or not access[1]:
        return None
    return raw_bytes_unchecked(store, message_id)


def raw_bytes_unchecked(store: Store, message_id: str) -> bytes | None:
    """For the engine only (re-parsing, erasure hashes): no viewer reads through this."""
    sha = store.scalar("SELECT raw_sha256 FROM messages WHERE id = ?", [message_id])
    return blobs.raw_bytes(store, sha) if sha else None


# -- identity (S13) ---------------------------------------------------------------------
def _stored_fingerprint(store: Store, message_id: str) -> str:
    """The fingerprint of a message stored before 0020 (computed once, then kept)."""
    raw = raw_bytes_unchecked(store, message_id)
    fp = parse_message(raw).content_fp if raw is not None else ""
    store.execute("UPDATE messages SET content_fp = ? WHERE id = ?", [fp, message_id])
    return fp


def resolve_identities(store: Store, parsed: Sequence[ParsedMessage]) -> None:
    """Give each parsed message its store id and ``identity`` (S13, module doc): ``linked``
    (that content is stored already), ``new``, or ``variant`` (its Message-ID is taken by
    another content). Messages already resolved are left alone; within PARSED, a repeat of
    the same content links to the first."""
    todo = [p for p in parsed if p.identity is None]
    if not todo:
        return
    mids = list(dict.fromkeys(p.headers.message_id for p in todo if p.headers.message_id))
    variants: dict[str, list[tuple[str, str]]] = {}
    if mids:
        rows = store.rows(
            "SELECT m.id, m.message_id, m.content_fp FROM messages m"
            " JOIN (SELECT unnest(?::VARCHAR[]) AS mid) w ON m.message_id = w.mid"
            " ORDER BY m.first_seen_at, m.id",
            [mids],
        )
        for key, mid, fp in rows:
            variants.setdefault(mid, []).append(
                (key, fp if fp is not None else _stored_fingerprint(store, key))
            )
    hashed = existing_ids(
        store, ["sha256:" + p.content_fp for p in todo if not p.headers.message_id]
    )
    for p in todo:
        mid = p.headers.message_id
        if not mid:
            p.key = "sha256:" + p.content_fp
            p.identity = "linked" if p.key in hashed else "new"
            hashed.add(p.key)
            continue
        seen = variants.setdefault(mid, [])
        hit = next((key for key, fp in seen if fp == p.content_fp), None)
        if hit is not None:
            p.key, p.identity = hit, "linked"
            continue
        p.key, p.identity = (mid, "new") if not seen else (f"{mid}#{p.content_fp[:16]}", "variant")
        seen.append((p.key, p.content_fp))


def refresh_identities(store: Store, parsed: Sequence[ParsedMessage]) -> None:
    """Decide PARSED's identities again, inside the transaction that stores them: they were
    decided when the bodies arrived, and another mailbox's sync (a thread, another worker)
    may have stored a message with the same Message-ID since -- the same content (link to
    it) or another (this one becomes a variant). Without this second look, the later
    ``ON CONFLICT DO NOTHING`` would drop a message that reuses a Message-ID (S13)."""
    for p in parsed:
        p.identity = None
    resolve_identities(store, parsed)


_REFERENCING = [  # (table, column) holding a messages.id
    ("message_places", "message_id"),
    ("activities", "message_id"),
    ("attachments", "message_id"),
    ("notifications", "message_id"),
    ("audit_ledger", "message_id"),
    ("drafts", "reply_to_message_id"),
    ("followup_suggestions", "last_message_id"),
]  # a new table holding message ids joins this list (0020 re-keys what exists when it runs)


def rekey_identities(store: Store) -> dict[str, int]:
    """Migration 0020: fill ``message_id``; re-key messages stored under a raw-bytes hash or
    a garbage Message-ID to ``sha256:<content fingerprint>`` (and every row that points to
    them); re-sanitize stored HTML that may still load remote images. Nothing is deleted:
    when the new id is taken already, the message keeps its old id."""
    rows = store.rows("SELECT id, message_id_header FROM messages")
    taken = {r[0] for r in rows}
    mapping: dict[str, str] = {}
    fingerprints: dict[str, str] = {}
    plain: list[str] = []
    for key, header in rows:
        mid = usable_message_id(header)
        if mid is not None and mid == key:
            plain.append(key)
            continue
        raw = raw_bytes_unchecked(store, key)
        if raw is None:
            continue
        parsed = parse_message(raw)
        fingerprints[key] = parsed.content_fp
        new = mid if mid is not None else "sha256:" + parsed.content_fp
        if new != key and new not in taken:
            mapping[key] = new
            taken.add(new)
    if plain:
        store.execute(
            "UPDATE messages SET message_id = id WHERE list_contains(?::VARCHAR[], id)", [plain]
        )
    if fingerprints:
        store.execute("CREATE TEMP TABLE _rekey_map (old VARCHAR, new VARCHAR, fp VARCHAR)")
        try:
            append(
                store,
                "_rekey_map",
                [
                    ("old", "VARCHAR", list(fingerprints)),
                    ("new", "VARCHAR", [mapping.get(k, k) for k in fingerprints]),
                    ("fp", "VARCHAR", list(fingerprints.values())),
                ],
            )
            for table, column in _REFERENCING:
                if store.scalar(
                    "SELECT count(*) FROM information_schema.columns"
                    " WHERE table_name = ? AND column_name = ?",
                    [table, column],
                ):
                    store.execute(
                        f"UPDATE {table} SET {column} = m.new FROM _rekey_map m"
                        f" WHERE {table}.{column} = m.old AND m.new <> m.old"
                    )
            store.execute(
                "UPDATE messages SET id = m.new, content_fp = m.fp,"
                " message_id = CASE WHEN m.new LIKE 'sha256:%' THEN NULL ELSE m.new END"
                " FROM _rekey_map m WHERE messages.id = m.old"
            )
        finally:
            store.execute("DROP TABLE IF EXISTS _rekey_map")
    html = store.rows(
        "SELECT id, body_html FROM messages WHERE body_html LIKE '%<img%'"
        " OR body_html ILIKE '%url(%'"
    )
    for key, body in html:
        clean = sanitize_html(body)
        if clean != body:
            store.execute("UPDATE messages SET body_html = ? WHERE id = ?", [clean, key])
    if mapping:
        log.info("0020_identity: %d message(s) re-keyed by content", len(mapping))
    return {"rekeyed": len(mapping), "fingerprinted": len(fingerprints), "html": len(html)}


# -- showing ---------------------------------------------------------------------------
_INLINE_TYPES = {"image/png", "image/gif", "image/jpeg", "image/webp", "image/bmp"}
_CID_SRC_RE = re.compile(r'src="cid:([^"]*)"', re.I)
INLINE_IMAGE_MAX = 5 * 1024 * 1024


def html_for_display(store: Store, message_id: str, html: str) -> str:
    """A stored message's HTML ready to show (A1): sanitized again (HTML stored by older
    versions may hold remote images), ``cid:`` images as ``data:`` URIs of the message's own
    stored attachments (raster types up to ``INLINE_IMAGE_MAX``). Nothing loads from outside;
    a ``cid:`` without its attachment loads nothing."""
    clean = sanitize_html(html)
    if "cid:" not in clean:
        return clean
    from mailops.store.timeline import attachment_content  # the one reader of attachment bytes

    parts = store.rows(
        "SELECT lower(content_id), content_type, part_index FROM attachments"
        " WHERE message_id = ? AND content_id IS NOT NULL AND sha256 IS NOT NULL AND size <= ?",
        [message_id, INLINE_IMAGE_MAX],
    )
    by_cid = {cid: (ctype, int(part)) for cid, ctype, part in parts if ctype in _INLINE_TYPES}

    def inline(m: re.Match[str]) -> str:
        found = by_cid.get(unquote(m.group(1)).strip().lower())
        content = attachment_content(store, message_id, found[1]) if found else None
        if found is None or content is None:
            return m.group(0)
        return f'src="data:{found[0]};base64,{base64.b64encode(content).decode()}"'

    return _CID_SRC_RE.sub(inline, clean)
