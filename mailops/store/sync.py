"""Sync state in the store: directory snapshot rows, folder checkpoints, runs, the audit ledger.

A checkpoint row per (mailbox, folder) carries the folder's UIDVALIDITY: a row whose
uidvalidity differs from the server's is stale (S7/S8 recovery re-links by Message-ID).
``uidnext``/``highestmodseq`` are written only when a folder was read to its end, so a
run killed half-way never looks "unchanged" to the next one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa

from mailops.store import Store

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
    "folder_reports",
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
    return {
        "addresses": addresses,
        "deals": deals,
        "mailbox_addresses": mailbox_addresses,
        "never_log": never_log,
    }


def add_never_log(store: Store, kind: str, value: str, user_id: str | None = None) -> None:
    """S9: never log mail with this address (``kind='address'``) or for this customer
    (``kind='customer'``), for one user or (``user_id=None``) for everyone."""
    if kind not in ("address", "customer"):
        raise ValueError(kind)
    value = value.strip().lower() if kind == "address" else value
    exists = store.scalar(
        "SELECT count(*) FROM never_log WHERE kind = ? AND value = ? AND user_id IS NOT DISTINCT FROM ?",
        [kind, value, user_id],
    )
    if not exists:
        store.execute(
            "INSERT INTO never_log (kind, value, user_id) VALUES (?, ?, ?)", [kind, value, user_id]
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


def checkpoints(store: Store, mailbox_id: int) -> dict[str, Checkpoint]:
    rows = store.rows(
        "SELECT folder, uidvalidity, last_uid, highestmodseq, uidnext, messages"
        " FROM folder_checkpoints WHERE mailbox_id = ?",
        [mailbox_id],
    )
    return {r[0]: Checkpoint(*r) for r in rows}


def save_checkpoint(store: Store, mailbox_id: int, cp: Checkpoint) -> None:
    store.execute(
        "INSERT INTO folder_checkpoints (mailbox_id, folder, uidvalidity, last_uid, highestmodseq,"
        " uidnext, messages, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (mailbox_id, folder) DO UPDATE SET uidvalidity = excluded.uidvalidity,"
        " last_uid = excluded.last_uid, highestmodseq = excluded.highestmodseq,"
        " uidnext = excluded.uidnext, messages = excluded.messages, updated_at = excluded.updated_at",
        [
            mailbox_id,
            cp.folder,
            cp.uidvalidity,
            cp.last_uid,
            cp.highestmodseq,
            cp.uidnext,
            cp.messages,
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
        "stored", "skipped", "linked", "error_code", "error_message", "duration_s",
    ]  # fmt: skip
    types = {
        "id": pa.int64(), "mailbox_id": pa.int64(), "started_at": pa.timestamp("us"),
        "finished_at": pa.timestamp("us"), "examined": pa.int64(), "stored": pa.int64(),
        "skipped": pa.int64(), "linked": pa.int64(), "duration_s": pa.float64(),
    }  # fmt: skip
    t = pa.table({c: pa.array([r.get(c) for r in rows], types.get(c, pa.string())) for c in cols})
    _bulk(store, "sync_runs", t)


def add_folder_reports(store: Store, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    cols = [
        "run_id", "mailbox_id", "folder", "uidvalidity", "server_messages", "server_uidnext",
        "highestmodseq", "examined", "stored", "skipped",
    ]  # fmt: skip
    t = pa.table(
        {
            c: pa.array([r.get(c) for r in rows], pa.string() if c == "folder" else pa.int64())
            for c in cols
        }
    )
    _bulk(store, "sync_folder_reports", t)


def mark_synced(store: Store, mailbox_ids: Sequence[int], at: datetime) -> None:
    """A good sync: last_sync_at = last_good_sync_at = AT, transient failures reset (C4)."""
    if not mailbox_ids:
        return
    t = pa.table({"id": pa.array(list(mailbox_ids), pa.int64())})
    store.conn.register("_synced_ids", t)
    try:
        store.execute(
            "UPDATE mailboxes SET last_sync_at = ?, last_good_sync_at = ?, transient_failures = 0"
            " WHERE id IN (SELECT id FROM _synced_ids)",
            [at, at],
        )
    finally:
        store.conn.unregister("_synced_ids")


def _bulk(store: Store, table: str, t: pa.Table) -> None:
    name = f"_bulk_{table}_{id(t)}"
    store.conn.register(name, t)
    try:
        cols = ", ".join(f'"{c}"' for c in t.column_names)
        store.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {name}")
    finally:
        store.conn.unregister(name)


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
            "           WHERE l.run_id = sync_runs.id)"
            " WHERE status = 'running' AND list_contains(?, mailbox_id)",
            [_now(), ids],
        )
    return int(n or 0)


def checkpoints_for(store: Store, mailbox_ids: Sequence[int]) -> dict[int, dict[str, Checkpoint]]:
    out: dict[int, dict[str, Checkpoint]] = {i: {} for i in mailbox_ids}
    rows = store.rows(
        "SELECT mailbox_id, folder, uidvalidity, last_uid, highestmodseq, uidnext, messages"
        " FROM folder_checkpoints WHERE list_contains(?, mailbox_id)",
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
) -> None:
    store.execute(
        "UPDATE sync_runs SET finished_at = ?, status = ?, examined = ?, stored = ?, skipped = ?,"
        " linked = ?, duration_s = ?, error_code = ?, error_message = ? WHERE id = ?",
        [
            _now(),
            status,
            examined,
            stored,
            skipped,
            linked,
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


def add_ledger(store: Store, rows: Sequence[LedgerRow]) -> int:
    if not rows:
        return 0
    now = _now()
    t = pa.table(
        {
            "run_id": pa.array([r.run_id for r in rows], pa.int64()),
            "mailbox_id": pa.array([r.mailbox_id for r in rows], pa.int64()),
            "folder": pa.array([r.folder for r in rows], pa.string()),
            "uidvalidity": pa.array([r.uidvalidity for r in rows], pa.int64()),
            "uid": pa.array([r.uid for r in rows], pa.int64()),
            "message_id": pa.array([r.message_id for r in rows], pa.string()),
            "decision": pa.array([r.decision for r in rows], pa.string()),
            "reason": pa.array([r.reason for r in rows], pa.string()),
            "customers": pa.array([r.customers for r in rows], pa.list_(pa.string())),
            "msg_date": pa.array([r.msg_date for r in rows], pa.timestamp("us")),
            "from_addr": pa.array([r.from_addr for r in rows], pa.string()),
            "subject": pa.array([r.subject for r in rows], pa.string()),
            "identity": pa.array([r.identity for r in rows], pa.string()),
            "examined_at": pa.array([now] * len(rows), pa.timestamp("us")),
        }
    )
    name = f"_ledger_{id(t)}"
    store.conn.register(name, t)
    try:
        cols = ", ".join(t.column_names)
        store.conn.execute(f"INSERT INTO audit_ledger ({cols}) SELECT {cols} FROM {name}")
    finally:
        store.conn.unregister(name)
    return len(rows)


def _audit_where(
    run_id: int | None, mailbox_id: int | None, since: datetime | None
) -> tuple[str, list[Any]]:
    where: list[str] = ["TRUE"]
    params: list[Any] = []
    if run_id is not None:
        where.append("l.run_id = ?")
        params.append(run_id)
    if mailbox_id is not None:
        where.append("l.mailbox_id = ?")
        params.append(mailbox_id)
    if since is not None:
        where.append("l.examined_at >= ?")
        params.append(since)
    return " AND ".join(where), params


def audit(
    store: Store,
    *,
    run_id: int | None = None,
    mailbox_id: int | None = None,
    since: datetime | None = None,
) -> pd.DataFrame:
    """The S11 ledger: one row per message examined per run, with the mailbox address."""
    where, params = _audit_where(run_id, mailbox_id, since)
    return store.query(
        "SELECT l.run_id, l.examined_at, l.mailbox_id, mb.address AS mailbox, l.folder,"
        " l.uidvalidity, l.uid, l.message_id, l.decision, l.reason, l.customers, l.msg_date,"
        " l.from_addr, l.subject, l.identity FROM audit_ledger l LEFT JOIN mailboxes mb ON mb.id = l.mailbox_id"
        f" WHERE {where} ORDER BY l.run_id, l.folder, l.uid",
        params,
    )


def audit_summary(
    store: Store,
    *,
    run_id: int | None = None,
    mailbox_id: int | None = None,
    since: datetime | None = None,
) -> pd.DataFrame:
    """Counts by decision and reason (what ``mailops audit --summary`` prints)."""
    where, params = _audit_where(run_id, mailbox_id, since)
    return store.query(
        "SELECT l.decision, l.reason, count(*) AS messages FROM audit_ledger l"
        f" WHERE {where} GROUP BY ALL ORDER BY l.decision DESC, messages DESC, l.reason",
        params,
    )


def runs(store: Store, mailbox_id: int | None = None, limit: int = 50) -> pd.DataFrame:
    sql = (
        "SELECT r.id, r.mailbox_id, mb.address AS mailbox, r.trigger, r.started_at, r.finished_at,"
        " r.status, r.examined, r.stored, r.skipped, r.linked, r.duration_s, r.error_code,"
        " r.error_message FROM sync_runs r LEFT JOIN mailboxes mb ON mb.id = r.mailbox_id"
    )
    if mailbox_id is not None:
        return store.query(
            sql + " WHERE r.mailbox_id = ? ORDER BY r.id DESC LIMIT ?", [mailbox_id, limit]
        )
    return store.query(sql + " ORDER BY r.id DESC LIMIT ?", [limit])


def folder_reports(store: Store, run_id: int) -> pd.DataFrame:
    return store.query(
        "SELECT * FROM sync_folder_reports WHERE run_id = ? ORDER BY folder", [run_id]
    )
