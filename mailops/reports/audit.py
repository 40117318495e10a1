"""R2 / S11: the sync audit -- runs, decisions by reason, the searchable ledger, what was
stored for a customer and from which mailbox, and a per-mailbox per-day reconciliation of
what the server held against what the ledger examined."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mailops.permissions import Access
from mailops.reports import Scope, where

__all__ = [
    "accounting",
    "message_errors",
    "customer_emails",
    "export",
    "ledger",
    "reason_counts",
    "reason_label",
    "reconciliation",
    "runs",
]


def reason_label(code: str) -> str:
    """The human description of a skip/store reason (the sync's reason table)."""
    from mailops.match import SKIP_REASONS
    from mailops.poison import ERROR_REASONS

    r = SKIP_REASONS.get(code) or ERROR_REASONS.get(code)
    return f"{r.description} ({r.rule})" if r else code


def _mailbox_access(scope: Scope, alias: str = "mb") -> Access:
    return scope.access("mailbox", owner=f"{alias}.owner_user_id", level=f"{alias}.visibility")


def _mailbox_scope(scope: Scope, alias: str = "mb") -> tuple[str, list[Any]]:
    acc = _mailbox_access(scope, alias)
    return where(
        (acc.where, acc.params),
        scope.mailbox_filter(f"{alias}.id", f"{alias}.address"),
    )


def runs(
    scope: Scope, *, run_id: int | None = None, run_ids: list[int] | None = None
) -> pd.DataFrame:
    """Sync runs in the period (newest first), with duration and counts."""
    run_clause: tuple[str, list[Any]] = ("TRUE", [])
    if run_id is not None:
        run_clause = ("r.id = ?", [int(run_id)])
    elif run_ids is not None:
        run_clause = ("list_contains(?, r.id)", [[int(i) for i in run_ids]])
    sql, params = where(_mailbox_scope(scope), scope.period("r.started_at"), run_clause)
    return scope.store.query(
        "SELECT r.id AS run_id, mb.address AS mailbox, mb.owner_user_id AS owner, r.trigger,"
        " r.started_at, r.finished_at, r.status,"
        " round(coalesce(r.duration_s, epoch(r.finished_at) - epoch(r.started_at)), 3) AS duration_s,"
        " r.examined, r.stored, r.skipped, r.linked, r.error_code, r.error_message"
        " FROM sync_runs r JOIN mailboxes mb ON mb.id = r.mailbox_id"
        f" WHERE {sql} ORDER BY r.started_at DESC, r.id DESC",
        params,
    )


def _ledger_scope(
    scope: Scope, run_id: int | None, run_ids: list[int] | None = None
) -> tuple[str, list[Any]]:
    run_clause: tuple[str, list[Any]] = ("TRUE", [])
    if run_id is not None:
        run_clause = ("l.run_id = ?", [int(run_id)])
    elif run_ids is not None:
        run_clause = ("list_contains(?, l.run_id)", [[int(i) for i in run_ids]])
    return where(_mailbox_scope(scope), scope.period("l.examined_at"), run_clause)


def reason_counts(
    scope: Scope, *, run_id: int | None = None, run_ids: list[int] | None = None
) -> pd.DataFrame:
    """Stored vs skipped by reason code, with the reason's description."""
    sql, params = _ledger_scope(scope, run_id, run_ids)
    df = scope.store.query(
        "SELECT l.decision, l.reason, count(*) AS messages, count(DISTINCT l.mailbox_id) AS mailboxes"
        " FROM audit_ledger l JOIN mailboxes mb ON mb.id = l.mailbox_id"
        f" WHERE {sql} GROUP BY ALL ORDER BY l.decision DESC, messages DESC, l.reason",
        params,
    )
    df["description"] = [reason_label(c) for c in df["reason"]]
    return df


def customer_ids(scope: Scope, ref: str) -> list[str]:
    """Customer ids matching REF: an id, an e-mail address (any period), or part of a name."""
    ref = (ref or "").strip()
    if not ref:
        return []
    rows = scope.store.rows(
        "SELECT DISTINCT c.id FROM customers c LEFT JOIN customer_addresses ca ON ca.customer_id = c.id"
        " WHERE c.id = ? OR ca.address = lower(?) OR c.name ILIKE ? ORDER BY c.id",
        [ref, ref, f"%{ref}%"],
    )
    return [r[0] for r in rows]


def ledger(
    scope: Scope,
    *,
    run_id: int | None = None,
    search: str = "",
    address: str = "",
    subject: str = "",
    message_id: str = "",
    customer: str = "",
    decision: str = "",
    reason: str = "",
    limit: int | None = None,
) -> pd.DataFrame:
    """The per-message ledger (S11), searchable: every filter is optional and combined.

    ``address`` matches From, or To/Cc of stored messages; ``customer`` is an id, address or
    name; ``search`` looks in subject, sender, Message-ID and mailbox address."""
    clauses = [_ledger_scope(scope, run_id)]
    shown = _mailbox_access(scope).subject_ok  # P2: never search what may not be shown
    if address:
        a = address.strip().lower()
        clauses.append(
            (
                "(l.from_addr = ? OR list_contains(msg.to_addrs, ?) OR list_contains(msg.cc_addrs, ?))",
                [a, a, a],
            )
        )
    if subject:
        clauses.append((f"({shown} AND l.subject ILIKE ?)", [f"%{subject}%"]))
    if message_id:
        from mailops.parse import normalize_message_id

        clauses.append(("l.message_id = ?", [normalize_message_id(message_id) or message_id]))
    if customer:
        clauses.append(("list_has_any(l.customers, ?)", [customer_ids(scope, customer) or ["\0"]]))
    if decision:
        clauses.append(("l.decision = ?", [decision]))
    if reason:
        clauses.append(("l.reason = ?", [reason]))
    if search:
        s = f"%{search}%"
        clauses.append(
            (
                f"(({shown} AND l.subject ILIKE ?) OR l.from_addr ILIKE ? OR l.message_id ILIKE ?"
                " OR mb.address ILIKE ?)",
                [s, s, s, s],
            )
        )
    sql, params = where(*clauses)
    tail = f" LIMIT {int(limit)}" if limit else ""
    return scope.store.query(
        "SELECT l.examined_at, l.run_id, mb.address AS mailbox, l.folder, l.uid, l.message_id,"
        f" l.msg_date, l.from_addr, {_mailbox_access(scope).subject('l.subject', 'subject')},"
        " l.decision, l.reason,"
        " array_to_string(l.customers, ', ') AS customers"
        " FROM audit_ledger l JOIN mailboxes mb ON mb.id = l.mailbox_id"
        " LEFT JOIN messages msg ON msg.id = l.message_id"
        f" WHERE {sql} ORDER BY l.examined_at DESC, l.run_id DESC, l.folder, l.uid{tail}",
        params,
    )


def customer_emails(scope: Scope, customer: str) -> pd.DataFrame:
    """Which emails were stored for CUSTOMER, from which mailbox, and everywhere seen (S8)."""
    ids = customer_ids(scope, customer) or ["\0"]
    acc = scope.access(
        "activity",
        user="a.user_id",
        customer_owner="c.owner_user_id",
        owner="mb.owner_user_id",
        level="mb.visibility",
    )
    sql, params = where(
        ("list_contains(?, a.customer_id)", [ids]),
        (acc.where, acc.params),
        scope.period("coalesce(a.occurred_at, msg.sent_at)"),
        scope.mailbox_filter("a.mailbox_id", "mb.address"),
    )
    seen = scope.access("mailbox", owner="m2.owner_user_id")
    seen_sql, seen_params = seen.where, seen.params
    return scope.store.query(
        "WITH seen AS (SELECT p.message_id,"
        " string_agg(DISTINCT m2.address || ' ' || p.folder, '; ') AS seen_in"
        " FROM message_places p JOIN mailboxes m2 ON m2.id = p.mailbox_id"
        f" WHERE {seen_sql} GROUP BY 1)"
        " SELECT a.customer_id, c.name AS customer, coalesce(a.occurred_at, msg.sent_at) AS sent_at,"
        f" a.direction, {acc.subject('msg.subject', 'subject')}, msg.from_addr, msg.id AS message_id, mb.address AS stored_from,"
        " seen.seen_in, a.created_at AS stored_at, a.match_kind, a.deal_id,"
        " a.unlinked_at IS NOT NULL AS unlinked"
        " FROM activities a JOIN messages msg ON msg.id = a.message_id"
        " LEFT JOIN customers c ON c.id = a.customer_id"
        " LEFT JOIN mailboxes mb ON mb.id = a.mailbox_id"
        " LEFT JOIN seen ON seen.message_id = a.message_id"
        f" WHERE {sql} ORDER BY sent_at DESC, a.customer_id",
        [*seen_params, *params],
    )


def reconciliation(scope: Scope) -> pd.DataFrame:
    """Per mailbox per day: what the server held at the day's last sync (the folders'
    message counts from that run's listing) against what the ledger examined.

    The sync never lists messages older than its window (S2), so the first listing of a
    folder is the *baseline*: its surplus over the ledger is mail before the window, by
    design. From then on every message that appears on the server must be examined: per
    folder (same UIDVALIDITY) ``(server now - server at the previous listing) - messages the
    ledger examined in between``; what is above zero is ``unexplained`` (new on the server,
    never examined: flagged), what is below is ``removed`` (deleted or moved away on the
    server; they stay stored, S7). A day whose last run got no listing (it failed) is flagged too.
    ``not_examined`` is the running total: server count minus distinct messages examined."""
    sql, params = where(
        _mailbox_scope(scope),
        ("r.status <> 'running'", []),
        (("r.started_at < ?", [scope.until]) if scope.until is not None else ("TRUE", [])),
    )
    df = scope.store.query(
        "WITH last_run AS ("
        "  SELECT r.mailbox_id, r.started_at::DATE AS day, max(r.id) AS run_id,"
        "         arg_max(r.status, r.id) AS status, arg_max(r.error_code, r.id) AS error_code,"
        "         count(*) AS runs, sum(r.examined) AS examined_that_day,"
        "         sum(r.stored) AS stored_that_day, sum(r.skipped) AS skipped_that_day"
        "  FROM sync_runs r JOIN mailboxes mb ON mb.id = r.mailbox_id"
        f"  WHERE {sql} GROUP BY 1, 2),"
        " listing AS ("
        "  SELECT lr.mailbox_id, lr.day, lr.run_id, f.folder, f.uidvalidity, f.server_messages,"
        "   lag(f.server_messages) OVER w AS prev_server, lag(lr.run_id) OVER w AS prev_run"
        "  FROM last_run lr JOIN sync_folder_reports f ON f.run_id = lr.run_id"
        "   AND coalesce(f.state, 'examined') <> 'not_examined'"  # those: accounting()
        "  WINDOW w AS (PARTITION BY lr.mailbox_id, f.folder, f.uidvalidity ORDER BY lr.day)),"
        " seen AS ("
        "  SELECT s.mailbox_id, s.day, s.folder,"
        "   count(DISTINCT l.uid) AS ledger_examined,"
        "   count(DISTINCT l.uid) FILTER (WHERE l.run_id > coalesce(s.prev_run, -1)) AS examined_since"
        "  FROM listing s JOIN audit_ledger l ON l.mailbox_id = s.mailbox_id AND l.folder = s.folder"
        "   AND l.uidvalidity = s.uidvalidity AND l.run_id <= s.run_id"
        "  GROUP BY 1, 2, 3),"
        " per_folder AS ("
        "  SELECT s.*, coalesce(seen.ledger_examined, 0) AS ledger_examined,"
        "   CASE WHEN s.prev_server IS NULL THEN NULL"
        "    ELSE s.server_messages - s.prev_server - coalesce(seen.examined_since, 0) END AS unexplained"
        "  FROM listing s LEFT JOIN seen ON seen.mailbox_id = s.mailbox_id AND seen.day = s.day"
        "   AND seen.folder = s.folder)"
        " SELECT lr.day, mb.address AS mailbox, lr.run_id AS last_run, lr.status, lr.error_code,"
        "  lr.runs, count(pf.folder) AS folders,"
        "  count(pf.folder) FILTER (WHERE pf.prev_server IS NULL) AS baseline_folders,"
        "  coalesce(sum(pf.server_messages), 0)::BIGINT AS server_messages,"
        "  coalesce(sum(pf.ledger_examined), 0)::BIGINT AS ledger_examined,"
        "  coalesce(sum(greatest(pf.unexplained, 0)), 0)::BIGINT AS unexplained,"
        "  coalesce(-sum(least(pf.unexplained, 0)), 0)::BIGINT AS removed,"
        "  lr.examined_that_day::BIGINT AS examined_that_day,"
        "  lr.stored_that_day::BIGINT AS stored_that_day,"
        "  lr.skipped_that_day::BIGINT AS skipped_that_day"
        " FROM last_run lr JOIN mailboxes mb ON mb.id = lr.mailbox_id"
        " LEFT JOIN per_folder pf ON pf.mailbox_id = lr.mailbox_id AND pf.day = lr.day"
        " GROUP BY ALL ORDER BY lr.day DESC, mailbox",
        params,
    )
    if scope.since is not None:  # earlier days were needed above as the previous listing
        start = pd.Timestamp(scope.since.date())
        df = df[pd.Series([pd.Timestamp(d) >= start for d in df["day"]], index=df.index, dtype=bool)]
    df = df.reset_index(drop=True)
    df["not_examined"] = (df["server_messages"] - df["ledger_examined"]).astype("int64")
    df["flagged"] = (df["unexplained"] > 0) | (df["folders"] == 0)
    df["note"] = [
        _gap_note(*row)
        for row in zip(
            df["unexplained"],
            df["removed"],
            df["not_examined"],
            df["folders"],
            df["baseline_folders"],
            df["status"],
            df["error_code"],
            strict=True,
        )
    ]
    return df.drop(columns=["error_code"])


def _gap_note(
    unexplained: int,
    removed: int,
    not_examined: int,
    folders: int,
    baseline: int,
    status: str,
    code: Any,
) -> str:
    if folders == 0:
        return f"no server listing: the run {status}" + (
            f" ({code})" if isinstance(code, str) else ""
        )
    notes = []
    if unexplained > 0:
        notes.append(f"{unexplained} new on the server but never examined")
    if removed > 0:
        notes.append(f"{removed} removed or moved away on the server (kept, S7)")
    if baseline:
        notes.append(
            f"first listing of {baseline} folder(s): {max(not_examined, 0)} older than the window"
        )
    return "; ".join(notes) or "ok"


def _visible_mailboxes(scope: Scope) -> list[int]:
    sql, params = _mailbox_scope(scope)
    return [
        int(r[0]) for r in scope.store.rows(f"SELECT mb.id FROM mailboxes mb WHERE {sql}", params)
    ]


def accounting(scope: Scope) -> pd.DataFrame:
    """S11: every folder of every mailbox at its latest listing: examined, unchanged, failed,
    or not examined and why; what the server holds, how much of it is older than the window,
    what the ledger examined; ``not_accounted`` is what none of these explains."""
    from mailops.store.sync import folder_accounting

    ids = set(_visible_mailboxes(scope))
    df = folder_accounting(scope.store, viewer=scope.viewer)
    df = df[df["mailbox_id"].isin(ids)].reset_index(drop=True)
    return df.drop(columns=["mailbox_id"])


def message_errors(scope: Scope) -> pd.DataFrame:
    """S15: messages that could not be fetched, parsed or stored: reason, error, attempts,
    and whether they are still retried, given up or resolved."""
    from mailops.store.sync import message_errors as errors

    ids = set(_visible_mailboxes(scope))
    df = errors(scope.store)
    df = df[df["mailbox_id"].isin(ids)].reset_index(drop=True)
    df["description"] = [reason_label(c) for c in df["reason"]]
    return df.drop(columns=["mailbox_id"])


def export(df: pd.DataFrame, prefix: str | Path, name: str) -> list[Path]:
    """Write DF as ``<prefix>_<name>.csv`` (spreadsheet-safe: cells that would run are
    neutralized) and ``.parquet`` (raw values); return the paths."""
    from mailops.exports import write_csv

    if not str(prefix):
        return []
    csv, parquet = Path(f"{prefix}_{name}.csv"), Path(f"{prefix}_{name}.parquet")
    write_csv(df, csv)
    df.to_parquet(parquet, index=False)
    return [csv, parquet]


def why(
    scope: Scope,
    *,
    message_id: str = "",
    address: str = "",
    on: str = "",
    subject: str = "",
    server: bool = False,
) -> list[Any]:
    """X1 in the notebook: ``mailops explain``'s paragraphs for the email the search names
    (none when nothing is named). SERVER also searches the mail servers (logs in)."""
    if not (message_id or address or subject):
        return []
    from mailops.config import Settings
    from mailops.explain import explain

    return explain(
        scope.store,
        Settings.load() if server else None,
        scope.viewer,
        message_id=message_id or None,
        address=address or None,
        on=on or None,
        subject=subject or None,
        server=server,
    )
