"""R4: problematic accounts -- which, since when, why, last good sync, the period not
synced, what IT should do (the problem code's guidance), and the history of states."""

from __future__ import annotations

import pandas as pd

from mailops.reports import Scope, where

__all__ = ["guidance", "history", "problematic", "state_counts"]


def guidance(code: str | None) -> tuple[str, str]:
    """(message, IT guidance) of a problem code, from the connections' reason table."""
    from mailops.problems import PROBLEM_REASONS, reason

    if not code:
        return "", ""
    r = PROBLEM_REASONS.get(code) or reason(code)
    return r.message, r.guidance


def _mailbox_scope(scope: Scope) -> tuple[str, list]:
    acc = scope.access("mailbox", owner="mb.owner_user_id")
    return where(
        (acc.where, acc.params),
        scope.mailbox_filter("mb.id", "mb.address"),
    )


def problematic(scope: Scope) -> pd.DataFrame:
    """Problematic mailboxes: since when, reason, last good sync, the unsynced range and
    IT guidance. The unsynced range runs from the last good sync (else the connection) to
    now: sync stops while a mailbox is problematic (C3)."""
    sql, params = _mailbox_scope(scope)
    df = scope.store.query(
        "SELECT mb.id AS mailbox_id, mb.address AS mailbox, mb.owner_user_id AS owner,"
        " coalesce(u.name, mb.owner_user_id) AS owner_name, mb.provider, mb.auth_kind,"
        " mb.problem_code AS code, mb.problem_message AS message, mb.problem_since AS since,"
        " round((epoch(?::TIMESTAMP) - epoch(mb.problem_since)) / 86400.0, 1) AS days_problematic,"
        " mb.last_good_sync_at AS last_good_sync, mb.last_sync_at AS last_sync_attempt,"
        " coalesce(mb.last_good_sync_at, mb.connected_at) AS not_synced_from,"
        " ?::TIMESTAMP AS not_synced_to"
        " FROM mailboxes mb LEFT JOIN users u ON u.id = mb.owner_user_id"
        f" WHERE mb.state = 'problematic' AND {sql} ORDER BY mb.problem_since, mb.address",
        [scope.now, scope.now, *params],
    )
    pairs = [guidance(c) for c in df["code"]]
    df["reason"] = [p[0] for p in pairs]
    df["it_guidance"] = [p[1] for p in pairs]
    return df


def state_counts(scope: Scope) -> pd.DataFrame:
    """Mailboxes per state (the headline of the report)."""
    sql, params = _mailbox_scope(scope)
    df = scope.store.query(
        f"SELECT mb.state, count(*) AS mailboxes FROM mailboxes mb WHERE {sql}"
        " GROUP BY 1 ORDER BY 1",
        params,
    )
    df["mailboxes"] = df["mailboxes"].astype("int64")
    return df


def history(scope: Scope, *, only_problematic: bool = False) -> pd.DataFrame:
    """State changes (mailbox_events) in the period, newest first. ONLY_PROBLEMATIC keeps
    the mailboxes that are problematic now."""
    clauses = [_mailbox_scope(scope), scope.period("e.changed_at")]
    if only_problematic:
        clauses.append(("mb.state = 'problematic'", []))
    sql, params = where(*clauses)
    return scope.store.query(
        "SELECT e.changed_at, mb.address AS mailbox, e.from_state, e.to_state, e.code,"
        " e.message, e.actor_user_id AS actor FROM mailbox_events e"
        " JOIN mailboxes mb ON mb.id = e.mailbox_id"
        f" WHERE {sql} ORDER BY e.changed_at DESC, e.id DESC",
        params,
    )
