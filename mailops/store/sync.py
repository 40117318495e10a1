"""Sync state in the store: directory snapshot rows, folder checkpoints, runs, the audit ledger.

A checkpoint row per (mailbox, folder) carries the folder's UIDVALIDITY: a row whose
uidvalidity differs from the server's is stale (S7/S8 recovery re-links by Message-ID).
``uidnext``/``highestmodseq`` are written only when a folder was read to its end, so a
run killed half-way never looks "unchanged" to the next one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailops.permissions import Access, Viewer, visible
from mailops.store import Store
from mailops.store.bulk import Column, append

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Checkpoint",
    "LedgerRow",
    "add_folder_reports",
    "add_ledger",
    "add_never_log",
    "allocate_run_ids",
    "audit",
    "audit_summary",
    "checkpoints",
    "checkpoints_for",
    "directory_rows",
    "finish_run",
    "count_failed_run",
    "folder_accounting",
    "folder_failed",
    "folder_reports",
    "folders_ok",
    "message_errors",
    "record_errors",
    "replay_pending_runs",
    "resolve_errors",
    "retries_for",
    "save_pending_runs",
    "insert_finished_runs",
    "insert_run",
    "mark_stale_runs",
    "mark_synced",
    "runs",
    "save_checkpoint",
]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def directory_rows(store: Store) -> dict[str, Any]:
    """Everything ``match.Directory`` needs, as plain rows (one query per table)."""
    addresses = store.rows(
        "SELECT customer_id, lower(address), is_primary, valid_from, valid_to FROM customer_addresses"
    )
    deals = store.rows("SELECT deal_id, customer_id FROM deal_customers")
    mailbox_addresses = [r[0] for r in store.rows("SELECT DISTINCT lower(address) FROM mailboxes")]
    never_log = store.rows("SELECT kind, value, user_id FROM never_log")
    never_log += [
        ("customer", r[0], None) for r in store.rows("SELECT id FROM customers WHERE never_log")
    ]
    erased = [r[0] for r in store.rows("SELECT address_sha256 FROM erasure_blocks")]
    return {
        "addresses": addresses,
        "deals": deals,
        "mailbox_addresses": mailbox_addresses,
        "never_log": never_log,
        "erased": erased,
    }


NEVER_LOG_KINDS = ("address", "domain", "customer")


def _never_log_value(kind: str, value: str) -> str:
    if kind not in NEVER_LOG_KINDS:
        raise ValueError(kind)
    return value if kind == "customer" else value.strip().lower().lstrip("@")


def add_never_log(
    store: Store, kind: str, value: str, user_id: str | None = None, *, by: str | None = None
) -> bool:
    """S9: never log mail with this address, in this domain, or for this customer, for one
    user or (``user_id=None``) for everyone. True when the entry is new."""
    value = _never_log_value(kind, value)
    exists = store.scalar(
        "SELECT count(*) FROM never_log WHERE kind = ? AND value = ? AND user_id IS NOT DISTINCT FROM ?",
        [kind, value, user_id],
    )
    if not exists:
        store.execute(
            "INSERT INTO never_log (kind, value, user_id, created_by) VALUES (?, ?, ?, ?)",
            [kind, value, user_id, by or user_id],
        )
    return not exists


def remove_never_log(store: Store, kind: str, value: str, user_id: str | None = None) -> bool:
    value = _never_log_value(kind, value)
    n = store.scalar(
        "SELECT count(*) FROM never_log WHERE kind = ? AND value = ? AND user_id IS NOT DISTINCT FROM ?",
        [kind, value, user_id],
    )
    if n:
        store.execute(
            "DELETE FROM never_log WHERE kind = ? AND value = ? AND user_id IS NOT DISTINCT FROM ?",
            [kind, value, user_id],
        )
    return bool(n)


def never_log_frame(store: Store, user_id: str | None = None) -> pd.DataFrame:
    """Never-log entries: the company's and (USER_ID given) that user's; customers marked
    never-log in the CRM import are listed as company-wide ``customer`` entries."""
    who = "user_id IS NULL" + (" OR user_id = ?" if user_id else " OR TRUE")
    params = [user_id] if user_id else []
    return store.query(
        "SELECT kind, value, coalesce(user_id, '(company)') AS scope, created_by, created_at"
        f" FROM never_log WHERE {who}"
        " UNION ALL SELECT 'customer', id, '(company, CRM import)', NULL, updated_at"
        " FROM customers WHERE never_log ORDER BY 1, 2, 3",
        params,
    )


# -- checkpoints ------------------------------------------------------------------------
@dataclass
class Checkpoint:
    folder: str
    uidvalidity: int
    last_uid: int
    highestmodseq: int | None
    uidnext: int | None
    messages: int | None
    before_window: int | None = None  # server messages older than the window (S11)


_CP_COLS = "folder, uidvalidity, last_uid, highestmodseq, uidnext, messages, before_window"


def checkpoints(store: Store, mailbox_id: int) -> dict[str, Checkpoint]:
    rows = store.rows(
        f"SELECT {_CP_COLS} FROM folder_checkpoints WHERE mailbox_id = ?", [mailbox_id]
    )
    return {r[0]: Checkpoint(*r) for r in rows}


def save_checkpoint(store: Store, mailbox_id: int, cp: Checkpoint) -> None:
    """The folder's checkpoint: an UPDATE of its row (0.5 ms here, where the upsert takes
    1.5 ms: a sync writes one per unit), the upsert only for a folder's first one."""
    updated = store.scalar(
        "UPDATE folder_checkpoints SET uidvalidity = ?, last_uid = ?, highestmodseq = ?,"
        " uidnext = ?, messages = ?, before_window = coalesce(?, before_window),"
        " updated_at = ? WHERE mailbox_id = ? AND folder = ?",
        [
            cp.uidvalidity, cp.last_uid, cp.highestmodseq, cp.uidnext, cp.messages,
            cp.before_window, _now(), mailbox_id, cp.folder,
        ],
    )  # fmt: skip
    if updated:
        return
    store.execute(
        "INSERT INTO folder_checkpoints (mailbox_id, folder, uidvalidity, last_uid, highestmodseq,"
        " uidnext, messages, before_window, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (mailbox_id, folder) DO UPDATE SET uidvalidity = excluded.uidvalidity,"
        " last_uid = excluded.last_uid, highestmodseq = excluded.highestmodseq,"
        " uidnext = excluded.uidnext, messages = excluded.messages,"
        " before_window = coalesce(excluded.before_window, folder_checkpoints.before_window),"
        " updated_at = excluded.updated_at",
        [
            mailbox_id,
            cp.folder,
            cp.uidvalidity,
            cp.last_uid,
            cp.highestmodseq,
            cp.uidnext,
            cp.messages,
            cp.before_window,
            _now(),
        ],
    )


# -- runs -------------------------------------------------------------------------------
def allocate_run_ids(store: Store, n: int) -> list[int]:
    """N fresh run ids (the row itself is written later, in bulk or with the first batch)."""
    if n <= 0:
        return []
    return [int(r[0]) for r in store.rows("SELECT nextval('sync_run_seq') FROM range(?)", [n])]


def insert_run(
    store: Store, run_id: int, mailbox_id: int, trigger: str, started_at: datetime
) -> None:
    store.execute(
        "INSERT INTO sync_runs (id, mailbox_id, trigger, started_at) VALUES (?, ?, ?, ?)",
        [run_id, mailbox_id, trigger, started_at],
    )


def insert_finished_runs(store: Store, rows: Sequence[dict[str, Any]]) -> None:
    """Finished runs in one statement (a no-change sync of many mailboxes writes only this)."""
    if not rows:
        return
    cols = [
        "id", "mailbox_id", "trigger", "started_at", "finished_at", "status", "examined",
        "stored", "skipped", "linked", "errors", "error_code", "error_message", "duration_s",
    ]  # fmt: skip
    types = {
        "id": "BIGINT", "mailbox_id": "BIGINT", "started_at": "TIMESTAMP",
        "finished_at": "TIMESTAMP", "examined": "BIGINT", "stored": "BIGINT",
        "skipped": "BIGINT", "linked": "BIGINT", "errors": "BIGINT", "duration_s": "DOUBLE",
    }  # fmt: skip
    append(
        store, "sync_runs", [(c, types.get(c, "VARCHAR"), [r.get(c) for r in rows]) for c in cols]
    )


def add_folder_reports(store: Store, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    cols = [
        "run_id", "mailbox_id", "folder", "uidvalidity", "server_messages", "server_uidnext",
        "highestmodseq", "examined", "stored", "skipped", "state", "not_examined_reason",
        "special_use", "before_window", "window_start", "errors", "error",
    ]  # fmt: skip
    text = {"folder", "state", "not_examined_reason", "special_use", "error"}

    def kind(c: str) -> str:
        return "VARCHAR" if c in text else "TIMESTAMP" if c == "window_start" else "BIGINT"

    append(store, "sync_folder_reports", [(c, kind(c), [r.get(c) for r in rows]) for c in cols])


def mark_synced(store: Store, mailbox_ids: Sequence[int], at: datetime) -> None:
    """A good sync: last_sync_at = last_good_sync_at = AT, transient failures reset (C4)."""
    if not mailbox_ids:
        return
    store.execute(
        "UPDATE mailboxes SET last_sync_at = ?, last_good_sync_at = ?, transient_failures = 0,"
        " failed_runs = 0 WHERE list_contains(?::BIGINT[], id)",
        [at, at, [int(i) for i in mailbox_ids]],
    )


def mark_stale_runs(store: Store, mailbox_ids: Sequence[int]) -> int:
    """Runs of these mailboxes still 'running' from a killed process become 'interrupted'."""
    ids = list(mailbox_ids)
    n = store.scalar(
        "SELECT count(*) FROM sync_runs WHERE status = 'running' AND list_contains(?, mailbox_id)",
        [ids],
    )
    if n:
        store.execute(
            "UPDATE sync_runs SET status = 'interrupted', finished_at = coalesce(finished_at, ?),"
            " examined = (SELECT count(*) FROM audit_ledger l WHERE l.run_id = sync_runs.id),"
            " stored = (SELECT count(*) FILTER (WHERE decision = 'stored') FROM audit_ledger l"
            "           WHERE l.run_id = sync_runs.id),"
            " skipped = (SELECT count(*) FILTER (WHERE decision = 'skipped') FROM audit_ledger l"
            "           WHERE l.run_id = sync_runs.id),"
            " errors = (SELECT count(*) FILTER (WHERE decision = 'error') FROM audit_ledger l"
            "           WHERE l.run_id = sync_runs.id)"
            " WHERE status = 'running' AND list_contains(?, mailbox_id)",
            [_now(), ids],
        )
    return int(n or 0)


def checkpoints_for(store: Store, mailbox_ids: Sequence[int]) -> dict[int, dict[str, Checkpoint]]:
    out: dict[int, dict[str, Checkpoint]] = {i: {} for i in mailbox_ids}
    rows = store.rows(
        f"SELECT mailbox_id, {_CP_COLS} FROM folder_checkpoints WHERE list_contains(?, mailbox_id)",
        [list(mailbox_ids)],
    )
    for r in rows:
        out.setdefault(r[0], {})[r[1]] = Checkpoint(*r[1:])
    return out


def finish_run(
    store: Store,
    run_id: int,
    *,
    status: str,
    examined: int,
    stored: int,
    skipped: int,
    linked: int,
    duration_s: float,
    error_code: str | None = None,
    error_message: str | None = None,
    errors: int = 0,
) -> None:
    store.execute(
        "UPDATE sync_runs SET finished_at = ?, status = ?, examined = ?, stored = ?, skipped = ?,"
        " linked = ?, errors = ?, duration_s = ?, error_code = ?, error_message = ? WHERE id = ?",
        [
            _now(),
            status,
            examined,
            stored,
            skipped,
            linked,
            errors,
            duration_s,
            error_code,
            error_message,
            run_id,
        ],
    )


# -- ledger -----------------------------------------------------------------------------
@dataclass(frozen=True)
class LedgerRow:
    run_id: int
    mailbox_id: int
    folder: str
    uidvalidity: int
    uid: int
    message_id: str | None
    decision: str
    reason: str
    customers: list[str]
    msg_date: datetime | None
    from_addr: str | None
    subject: str | None
    identity: str | None = None  # S13, stored rows: new | linked | variant (same id, other content)
    to_addrs: list[str] | None = None  # X1: what a dry run of a rule change replays
    cc_addrs: list[str] | None = None
    internaldate: datetime | None = None
    flags: str | None = None


def _scrub_erased(r: LedgerRow) -> LedgerRow:
    """G1: a message naming an erased person is counted, never described."""
    if r.reason != "erased":
        return r
    from dataclasses import replace

    return replace(
        r, message_id="erased", from_addr=None, subject=None, to_addrs=None, cc_addrs=None
    )


def add_ledger(store: Store, rows: Sequence[LedgerRow]) -> int:
    if not rows:
        return 0
    rows = [_scrub_erased(r) for r in rows]
    now = _now()
    t: list[Column] = [
        ("run_id", "BIGINT", [r.run_id for r in rows]),
        ("mailbox_id", "BIGINT", [r.mailbox_id for r in rows]),
        ("folder", "VARCHAR", [r.folder for r in rows]),
        ("uidvalidity", "BIGINT", [r.uidvalidity for r in rows]),
        ("uid", "BIGINT", [r.uid for r in rows]),
        ("message_id", "VARCHAR", [r.message_id for r in rows]),
        ("decision", "VARCHAR", [r.decision for r in rows]),
        ("reason", "VARCHAR", [r.reason for r in rows]),
        ("customers", "VARCHAR[]", [r.customers for r in rows]),
        ("msg_date", "TIMESTAMP", [r.msg_date for r in rows]),
        ("from_addr", "VARCHAR", [r.from_addr for r in rows]),
        ("subject", "VARCHAR", [r.subject for r in rows]),
        ("identity", "VARCHAR", [r.identity for r in rows]),
        ("to_addrs", "VARCHAR[]", [r.to_addrs for r in rows]),
        ("cc_addrs", "VARCHAR[]", [r.cc_addrs for r in rows]),
        ("internaldate", "TIMESTAMP", [r.internaldate for r in rows]),
        ("flags", "VARCHAR", [r.flags for r in rows]),
        ("examined_at", "TIMESTAMP", [now] * len(rows)),
    ]
    append(store, "audit_ledger", t)  # new rows: an append, no ON CONFLICT
    return len(rows)


def _audit_where(
    viewer: Viewer, run_id: int | None, mailbox_id: int | None, since: datetime | None
) -> tuple[str, list[Any], Access]:
    acc = visible(viewer, "mailbox", owner="mb.owner_user_id", level="mb.visibility")
    where: list[str] = [acc.where]
    params: list[Any] = list(acc.params)
    if run_id is not None:
        where.append("l.run_id = ?")
        params.append(run_id)
    if mailbox_id is not None:
        where.append("l.mailbox_id = ?")
        params.append(mailbox_id)
    if since is not None:
        where.append("l.examined_at >= ?")
        params.append(since)
    return " AND ".join(where), params, acc


def audit(
    store: Store,
    *,
    viewer: Viewer,
    run_id: int | None = None,
    mailbox_id: int | None = None,
    since: datetime | None = None,
) -> pd.DataFrame:
    """The S11 ledger rows VIEWER may see: one per message examined per run, with the
    mailbox address; the subject is NULL where the mailbox's level hides it (P2)."""
    where, params, acc = _audit_where(viewer, run_id, mailbox_id, since)
    return store.query(
        "SELECT l.run_id, l.examined_at, l.mailbox_id, mb.address AS mailbox, l.folder,"
        " l.uidvalidity, l.uid, l.message_id, l.decision, l.reason, l.customers, l.msg_date,"
        f" l.from_addr, {acc.subject('l.subject', 'subject')}, l.identity"
        " FROM audit_ledger l JOIN mailboxes mb ON mb.id = l.mailbox_id"
        f" WHERE {where} ORDER BY l.run_id, l.folder, l.uid",
        params,
    )


def examined_latest(store: Store, *, viewer: Viewer, mailbox_id: int | None = None) -> pd.DataFrame:
    """X1: the last decision on every message the sync examined (per mailbox, folder,
    UIDVALIDITY, UID) that VIEWER may see, with what a rule change is replayed on: the
    headers (To/Cc from the ledger, else from the stored message), INTERNALDATE, flags,
    and the mailbox's owner, window and folder choice."""
    acc = visible(viewer, "mailbox", owner="mb.owner_user_id", level="mb.visibility")
    where, params = [acc.where], list(acc.params)
    if mailbox_id is not None:
        where.append("l.mailbox_id = ?")
        params.append(mailbox_id)
    return store.query(
        "SELECT l.run_id, l.mailbox_id, mb.address AS mailbox, mb.owner_user_id AS owner,"
        " mb.connected_at, mb.backfill_days, mb.sync_folders, l.folder, l.uidvalidity, l.uid,"
        " l.message_id, l.decision, l.reason, l.customers, l.msg_date, l.from_addr,"
        f" {acc.subject('l.subject', 'subject')},"
        " coalesce(l.to_addrs, msg.to_addrs, []) AS to_addrs,"
        " coalesce(l.cc_addrs, msg.cc_addrs, []) AS cc_addrs,"
        " l.to_addrs IS NOT NULL OR msg.id IS NOT NULL AS headers_known,"
        " l.internaldate, coalesce(l.flags, '') AS flags, l.examined_at"
        " FROM audit_ledger l JOIN mailboxes mb ON mb.id = l.mailbox_id"
        " LEFT JOIN messages msg ON msg.id = l.message_id"
        f" WHERE {' AND '.join(where)}"
        " QUALIFY row_number() OVER (PARTITION BY l.mailbox_id, l.folder, l.uidvalidity, l.uid"
        "   ORDER BY l.run_id DESC, l.examined_at DESC) = 1"
        " ORDER BY l.mailbox_id, l.folder, l.uid",
        params,
    )


def ledger_matches(
    store: Store,
    *,
    viewer: Viewer,
    message_id: str | None = None,
    address: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    words: Sequence[str] = (),
    limit: int = 50,
) -> pd.DataFrame:
    """X1 explain: ledger rows VIEWER may see for one email -- by Message-ID, or an address
    on From/To/Cc (with a date range), or words of the subject (searched only where the
    mailbox's level shows subjects, P2) -- newest first, with the run's time."""
    acc = visible(viewer, "mailbox", owner="mb.owner_user_id", level="mb.visibility")
    where, params = [acc.where], list(acc.params)
    if message_id:
        where.append("l.message_id = ?")
        params.append(message_id)
    if address:
        where.append(
            "(l.from_addr = ? OR list_contains(l.to_addrs, ?) OR list_contains(l.cc_addrs, ?)"
            " OR list_contains(msg.to_addrs, ?) OR list_contains(msg.cc_addrs, ?))"
        )
        params += [address] * 5
    if since is not None:
        where.append("coalesce(l.msg_date, l.internaldate) >= ?")
        params.append(since)
    if until is not None:
        where.append("coalesce(l.msg_date, l.internaldate) < ?")
        params.append(until)
    for w in words:
        where.append(f"({acc.subject_ok} AND l.subject ILIKE ?)")
        params.append(f"%{w}%")
    return store.query(
        "SELECT l.run_id, r.started_at AS run_at, l.mailbox_id, mb.address AS mailbox,"
        " mb.owner_user_id AS owner, l.folder, l.uidvalidity, l.uid, l.message_id, l.decision,"
        f" l.reason, l.customers, l.msg_date, l.from_addr, {acc.subject('l.subject', 'subject')},"
        " l.examined_at FROM audit_ledger l JOIN mailboxes mb ON mb.id = l.mailbox_id"
        " LEFT JOIN sync_runs r ON r.id = l.run_id"
        " LEFT JOIN messages msg ON msg.id = l.message_id"
        f" WHERE {' AND '.join(where)} ORDER BY l.examined_at DESC, l.run_id DESC LIMIT ?",
        [*params, int(limit)],
    )


def first_stored(store: Store, message_id: str) -> tuple[int, datetime] | None:
    """(run, time) of the first ledger row that stored MESSAGE_ID (its engine fact)."""
    rows = store.rows(
        "SELECT run_id, examined_at FROM audit_ledger WHERE message_id = ? AND decision = 'stored'"
        " ORDER BY examined_at, run_id LIMIT 1",
        [message_id],
    )
    return (int(rows[0][0]), rows[0][1]) if rows else None


def ledger_place(
    store: Store, mailbox_id: int, folder: str, uidvalidity: int, uid: int
) -> tuple[int, str, str, datetime] | None:
    """(run, decision, reason, examined_at) of the last ledger row of one server place."""
    rows = store.rows(
        "SELECT run_id, decision, reason, examined_at FROM audit_ledger WHERE mailbox_id = ?"
        " AND folder = ? AND uidvalidity = ? AND uid = ? ORDER BY run_id DESC LIMIT 1",
        [mailbox_id, folder, uidvalidity, uid],
    )
    return (int(rows[0][0]), rows[0][1], rows[0][2], rows[0][3]) if rows else None


def audit_summary(
    store: Store,
    *,
    viewer: Viewer,
    run_id: int | None = None,
    mailbox_id: int | None = None,
    since: datetime | None = None,
) -> pd.DataFrame:
    """Counts by decision and reason (what ``mailops audit --summary`` prints)."""
    where, params, _ = _audit_where(viewer, run_id, mailbox_id, since)
    return store.query(
        "SELECT l.decision, l.reason, count(*) AS messages"
        " FROM audit_ledger l JOIN mailboxes mb ON mb.id = l.mailbox_id"
        f" WHERE {where} GROUP BY ALL ORDER BY l.decision DESC, messages DESC, l.reason",
        params,
    )


def runs(
    store: Store, mailbox_id: int | None = None, limit: int = 50, *, viewer: Viewer
) -> pd.DataFrame:
    acc = visible(viewer, "mailbox", owner="mb.owner_user_id")
    where, params = [acc.where], list(acc.params)
    if mailbox_id is not None:
        where.append("r.mailbox_id = ?")
        params.append(mailbox_id)
    return store.query(
        "SELECT r.id, r.mailbox_id, mb.address AS mailbox, r.trigger, r.started_at, r.finished_at,"
        " r.status, r.examined, r.stored, r.skipped, r.linked, r.errors, r.duration_s, r.error_code,"
        " r.error_message FROM sync_runs r JOIN mailboxes mb ON mb.id = r.mailbox_id"
        f" WHERE {' AND '.join(where)} ORDER BY r.id DESC LIMIT ?",
        [*params, limit],
    )


def folder_reports(store: Store, run_id: int, *, viewer: Viewer) -> pd.DataFrame:
    acc = visible(viewer, "mailbox", owner="mb.owner_user_id")
    return store.query(
        "SELECT f.* FROM sync_folder_reports f JOIN mailboxes mb ON mb.id = f.mailbox_id"
        f" WHERE f.run_id = ? AND {acc.where} ORDER BY f.folder",
        [run_id, *acc.params],
    )


# -- poison messages and failing folders (S15) ---------------------------------------------
def retries_for(
    store: Store, mailbox_ids: Sequence[int]
) -> dict[int, dict[tuple[str, int], dict[int, int]]]:
    """Messages still to retry: mailbox -> (folder, uidvalidity) -> {uid: attempts so far}."""
    out: dict[int, dict[tuple[str, int], dict[int, int]]] = {i: {} for i in mailbox_ids}
    rows = store.rows(
        "SELECT mailbox_id, folder, uidvalidity, uid, attempts FROM message_errors"
        " WHERE state = 'retrying' AND list_contains(?, mailbox_id)",
        [list(mailbox_ids)],
    )
    for mb, folder, uv, uid, attempts in rows:
        out.setdefault(mb, {}).setdefault((folder, uv), {})[int(uid)] = int(attempts)
    return out


def record_errors(
    store: Store,
    mailbox_id: int,
    run_id: int,
    folder: str,
    uidvalidity: int,
    errors: dict[int, tuple[str, str]],
    *,
    bound: int,
) -> int:
    """Count one more failed attempt for each uid -> (reason, one-line error); a message that
    reached BOUND attempts is ``given_up``. Returns how many were given up now."""
    if not errors:
        return 0
    now = _now()
    uids = list(errors)
    store.execute(
        "INSERT INTO message_errors (mailbox_id, folder, uidvalidity, uid, reason, error,"
        " attempts, state, first_run_id, last_run_id, first_failed_at, last_failed_at)"
        " SELECT ?, ?, ?, unnest(?::BIGINT[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), 1,"
        " CASE WHEN ? <= 1 THEN 'given_up' ELSE 'retrying' END, ?, ?, ?, ?"
        " ON CONFLICT (mailbox_id, folder, uidvalidity, uid) DO UPDATE SET"
        " reason = excluded.reason, error = excluded.error,"
        " attempts = message_errors.attempts + 1, last_run_id = excluded.last_run_id,"
        " last_failed_at = excluded.last_failed_at, resolved_at = NULL,"
        " state = CASE WHEN message_errors.attempts + 1 >= ? THEN 'given_up'"
        " ELSE 'retrying' END",
        [
            mailbox_id, folder, uidvalidity, uids, [errors[u][0] for u in uids],
            [errors[u][1] for u in uids], bound, run_id, run_id, now, now, bound,
        ],
    )  # fmt: skip
    return int(
        store.scalar(
            "SELECT count(*) FROM message_errors WHERE mailbox_id = ? AND folder = ?"
            " AND uidvalidity = ? AND list_contains(?, uid) AND state = 'given_up'"
            " AND last_run_id = ?",
            [mailbox_id, folder, uidvalidity, uids, run_id],
        )
        or 0
    )


def resolve_errors(
    store: Store, mailbox_id: int, folder: str, uidvalidity: int, uids: Sequence[int]
) -> None:
    """Retried messages that went through this time."""
    if uids:
        store.execute(
            "UPDATE message_errors SET state = 'resolved', resolved_at = ? WHERE mailbox_id = ?"
            " AND folder = ? AND uidvalidity = ? AND list_contains(?, uid) AND state <> 'resolved'",
            [_now(), mailbox_id, folder, uidvalidity, list(uids)],
        )


def message_errors(store: Store, mailbox_id: int | None = None) -> pd.DataFrame:
    """Poison messages (S15): reason, one-line error, attempts, retrying / given_up / resolved."""
    sql = (
        "SELECT e.mailbox_id, mb.address AS mailbox, e.folder, e.uidvalidity, e.uid, e.reason,"
        " e.error, e.attempts, e.state, e.first_run_id, e.last_run_id, e.first_failed_at,"
        " e.last_failed_at, e.resolved_at FROM message_errors e"
        " LEFT JOIN mailboxes mb ON mb.id = e.mailbox_id"
    )
    if mailbox_id is not None:
        return store.query(sql + " WHERE e.mailbox_id = ? ORDER BY 1, 3, 5", [mailbox_id])
    return store.query(sql + " ORDER BY 1, 3, 5")


def folder_failed(
    store: Store, mailbox_id: int, folder: str, code: str, error: str, run_id: int
) -> int:
    """One more consecutive failed run of FOLDER; returns the count."""
    store.execute(
        "INSERT INTO folder_failures (mailbox_id, folder, consecutive, error_code, error,"
        " last_run_id, last_failed_at) VALUES (?, ?, 1, ?, ?, ?, ?)"
        " ON CONFLICT (mailbox_id, folder) DO UPDATE SET"
        " consecutive = folder_failures.consecutive + 1, error_code = excluded.error_code,"
        " error = excluded.error, last_run_id = excluded.last_run_id,"
        " last_failed_at = excluded.last_failed_at",
        [mailbox_id, folder, code, error, run_id, _now()],
    )
    return int(
        store.scalar(
            "SELECT consecutive FROM folder_failures WHERE mailbox_id = ? AND folder = ?",
            [mailbox_id, folder],
        )
    )


def folders_ok(store: Store, mailbox_id: int, folders: Sequence[str]) -> None:
    if folders:
        store.execute(
            "DELETE FROM folder_failures WHERE mailbox_id = ? AND list_contains(?, folder)",
            [mailbox_id, list(folders)],
        )


def count_failed_run(store: Store, mailbox_id: int) -> int:
    """One more consecutive failed run of the mailbox (reset by ``mark_synced``)."""
    store.execute(
        "UPDATE mailboxes SET failed_runs = coalesce(failed_runs, 0) + 1 WHERE id = ?",
        [mailbox_id],
    )
    return int(store.scalar("SELECT failed_runs FROM mailboxes WHERE id = ?", [mailbox_id]) or 0)


# -- failed runs the store could not record (full disk): replayed at the next start -------
def pending_runs_path(store: Store) -> Path | None:
    return None if store.path == ":memory:" else Path(f"{store.side_path}.pending-runs.jsonl")


def save_pending_runs(store: Store, rows: Sequence[dict[str, Any]], error: str) -> bool:
    """Append run rows the store refused (a full disk) to a small file beside it; True when
    written. ``replay_pending_runs`` records them at the next start."""
    path = pending_runs_path(store)
    if path is None or not rows:
        return False
    try:
        with path.open("a", encoding="utf-8") as f:
            for row in rows:
                rec = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
                rec["error_message"] = (
                    (rec.get("error_message") or "") + f" [recorded late: {error}]"
                ).strip()[:500]
                f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return True
    except OSError:
        return False


def replay_pending_runs(store: Store) -> int:
    """Write the runs a previous start could not record; returns how many."""
    path = pending_runs_path(store)
    if path is None or not path.exists():
        return 0
    rows: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        for k in ("started_at", "finished_at"):
            if rec.get(k):
                rec[k] = datetime.fromisoformat(rec[k])
        rows.append(rec)
    known = {
        r[0]
        for r in store.rows(
            "SELECT id FROM sync_runs WHERE list_contains(?, id)", [[r.get("id") for r in rows]]
        )
    }
    fresh = [r for r in rows if r.get("id") not in known]
    with store.transaction():
        insert_finished_runs(store, fresh)
        for r in rows:
            if r.get("id") in known:  # its row exists (written with a first batch): finish it
                store.execute(
                    "UPDATE sync_runs SET status = ?, finished_at = coalesce(finished_at, ?),"
                    " error_code = ?, error_message = ? WHERE id = ? AND status IN ('running', 'interrupted')",
                    [
                        r.get("status") or "failed",
                        r.get("finished_at"),
                        r.get("error_code"),
                        r.get("error_message"),
                        r["id"],
                    ],
                )
    path.unlink(missing_ok=True)
    return len(rows)


# -- what was not examined (S11) -----------------------------------------------------------
def folder_accounting(
    store: Store, mailbox_id: int | None = None, *, viewer: Viewer
) -> pd.DataFrame:
    """Per mailbox and folder VIEWER may see, at the latest finished run that listed it: what
    the server holds, how much of it is older than the window, what the ledger ever examined
    there (same UIDVALIDITY), and what a folder not examined holds and why."""
    acc = visible(viewer, "mailbox", owner="mb.owner_user_id")
    where = "WHERE f.mailbox_id = ?" if mailbox_id is not None else ""
    params: list[Any] = [mailbox_id] if mailbox_id is not None else []
    return store.query(
        "WITH latest AS (SELECT f.*, row_number() OVER (PARTITION BY f.mailbox_id, f.folder"
        "  ORDER BY f.run_id DESC) AS n FROM sync_folder_reports f"
        f"  JOIN sync_runs r ON r.id = f.run_id AND r.status <> 'running' {where}),"
        " seen AS (SELECT mailbox_id, folder, uidvalidity, count(DISTINCT uid) AS examined_ever,"
        "  count(DISTINCT uid) FILTER (WHERE decision = 'error') AS errors_ever"
        "  FROM audit_ledger GROUP BY ALL)"
        " SELECT l.mailbox_id, mb.address AS mailbox, l.folder, l.special_use,"
        "  coalesce(l.state, 'examined') AS state, l.not_examined_reason, l.run_id,"
        "  l.reported_at, l.uidvalidity, l.server_messages, l.before_window, l.window_start,"
        "  coalesce(s.examined_ever, 0) AS examined_ever, coalesce(s.errors_ever, 0) AS errors_ever,"
        "  CASE WHEN coalesce(l.state, 'examined') = 'not_examined' THEN l.server_messages"
        "   ELSE greatest(coalesce(l.server_messages, 0) - coalesce(l.before_window, 0)"
        "    - coalesce(s.examined_ever, 0), 0) END AS not_accounted,"
        "  l.error"
        " FROM latest l LEFT JOIN mailboxes mb ON mb.id = l.mailbox_id"
        " LEFT JOIN seen s ON s.mailbox_id = l.mailbox_id AND s.folder = l.folder"
        "  AND s.uidvalidity = l.uidvalidity"
        f" WHERE l.n = 1 AND {acc.where} ORDER BY mailbox, l.state <> 'examined', l.folder",
        [*params, *acc.params],
    )


def failing_folders_for(store: Store, mailbox_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    out: dict[int, dict[str, int]] = {i: {} for i in mailbox_ids}
    for mb, folder, n in store.rows(
        "SELECT mailbox_id, folder, consecutive FROM folder_failures"
        " WHERE list_contains(?, mailbox_id)",
        [list(mailbox_ids)],
    ):
        out.setdefault(mb, {})[folder] = int(n)
    return out
