"""R5: what a notebook has to work with on a young store, said in words.

Before the first import, the first connect or the first finished sync the report tables
are empty; a reader (or the cron log) should learn why and what to do, not see a
traceback or a blank page. ``check(scope, needs)`` looks at the store once and returns a
``Readiness``: one ``Gap`` (a code and a sentence) per missing piece the notebook needs,
plus notes (a sync under way). A notebook cell ends with it; it renders as Markdown in
JupyterLab and the HTML report, as text in a log.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mailops.reports import Scope, open_reader, where
from mailops.store import store_exists

__all__ = ["Gap", "Readiness", "check", "for_user"]

#: What a notebook may need, checked in this order.
NEEDS = ("directory", "mailboxes", "sync", "mail")


@dataclass(frozen=True)
class Gap:
    code: str
    text: str


@dataclass
class Readiness:
    gaps: list[Gap] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not self.gaps

    @property
    def codes(self) -> list[str]:
        return [g.code for g in self.gaps]

    def lines(self) -> list[str]:
        return [g.text for g in self.gaps] + self.notes

    def _repr_markdown_(self) -> str:
        if not self.lines():
            return "*All the data this report needs is there.*"
        head = "**Not there yet:**\n\n" if self.gaps else ""
        return head + "\n".join(f"- {line}" for line in self.lines())

    def __repr__(self) -> str:
        return "\n".join(self.lines()) or "all the data this report needs is there"


def _at(ts: Any) -> str:
    return ts.strftime("%Y-%m-%d %H:%M UTC") if isinstance(ts, datetime) else str(ts)


def check(scope: Scope, needs: Sequence[str] = ("mailboxes", "sync")) -> Readiness:
    """Gaps among NEEDS (``directory``, ``mailboxes``, ``sync``, ``mail``) for what SCOPE's
    viewer sees, and a note per sync under way."""
    unknown = set(needs) - set(NEEDS)
    if unknown:
        raise ValueError(f"unknown needs: {sorted(unknown)}")
    store = scope.store
    boxes_sql, boxes_params = where(
        scope.viewer.mailbox_clause("mb.owner_user_id"),
        scope.mailbox_filter("mb.id", "mb.address"),
    )
    [(customers, mailboxes, connected, finished, stored)] = store.rows(
        "SELECT (SELECT count(*) FROM customers),"
        f" (SELECT count(*) FROM mailboxes mb WHERE {boxes_sql}),"
        f" (SELECT count(*) FROM mailboxes mb WHERE mb.state = 'connected' AND {boxes_sql}),"
        " (SELECT count(*) FROM sync_runs r JOIN mailboxes mb ON mb.id = r.mailbox_id"
        f"   WHERE r.status <> 'running' AND {boxes_sql}),"
        " (SELECT coalesce(sum(r.stored), 0) FROM sync_runs r"
        f"   JOIN mailboxes mb ON mb.id = r.mailbox_id WHERE {boxes_sql})",
        boxes_params * 4,
    )
    running = store.rows(
        "SELECT mb.address, r.started_at,"
        " (SELECT count(*) FROM audit_ledger l WHERE l.run_id = r.id) AS examined"
        " FROM sync_runs r JOIN mailboxes mb ON mb.id = r.mailbox_id"
        f" WHERE r.status = 'running' AND r.finished_at IS NULL AND {boxes_sql}"
        " ORDER BY r.started_at, mb.address",
        boxes_params,
    )
    out = Readiness()
    gap = out.gaps.append
    if "directory" in needs and not customers:
        gap(
            Gap(
                "no_customers",
                "No customers in the directory yet: import the CRM export"
                " (`mailops directory import --customers customers.csv`); mail is stored"
                " only for customers (S3).",
            )
        )
    if "mailboxes" in needs and not mailboxes:
        gap(
            Gap(
                "no_mailboxes",
                "No mailbox connected yet"
                + ("" if scope.viewer.sees_all else f" for {scope.viewer.user_id}")
                + ": connect one (`mailops mailbox connect` or the connect_mailbox notebook).",
            )
        )
    elif "mailboxes" in needs and not connected:
        gap(
            Gap(
                "no_connected_mailbox",
                f"None of the {mailboxes} mailbox(es) is connected now: see the"
                " problematic_accounts report (`mailops mailbox list`).",
            )
        )
    if "sync" in needs and mailboxes and not finished:
        if running:
            address, since, examined = running[0]
            others = f" (and {len(running) - 1} more)" if len(running) > 1 else ""
            gap(
                Gap(
                    "first_sync_running",
                    f"The first sync is under way: {address}{others} since {_at(since)},"
                    f" {examined:,} message(s) examined so far. No sync has finished yet, so"
                    " the counts below are partial and the reconciliation starts with the"
                    " first finished run.",
                )
            )
            running = []
        else:
            gap(
                Gap(
                    "no_sync",
                    "No sync has run yet: run `mailops sync` (or the scheduled_sync"
                    " notebook); until then there are no runs, ledger rows or messages.",
                )
            )
    if "mail" in needs and finished and not stored:
        gap(
            Gap(
                "no_mail",
                "No customer email stored yet: the syncs so far found none"
                " (see the sync_audit report for why each message was skipped).",
            )
        )
    for address, since, examined in running if "sync" in needs else []:
        out.notes.append(
            f"A sync of {address} is under way since {_at(since)} ({examined:,} message(s)"
            " examined so far); what it stores shows once it finishes."
        )
    return out


def for_user(db: str | os.PathLike[str], user_id: str, needs: Sequence[str] = ()) -> Readiness:
    """For the interactive notebooks: is there a store, is USER_ID in the directory, and
    (NEEDS ``mailbox`` / ``customers``) has he a connected mailbox, are there customers."""
    if not store_exists(db):
        return Readiness(
            [
                Gap(
                    "no_store",
                    f"No store yet at {db}: it is created by the first"
                    " `mailops directory import` (the CRM users and customers).",
                )
            ]
        )
    store = open_reader(db)
    try:
        [(known, connected, customers)] = store.rows(
            "SELECT (SELECT count(*) FROM users WHERE id = ?),"
            " (SELECT count(*) FROM mailboxes WHERE owner_user_id = ? AND state = 'connected'),"
            " (SELECT count(*) FROM customers)",
            [user_id, user_id],
        )
    finally:
        store.close()
    out = Readiness()
    if not known:
        out.gaps.append(
            Gap(
                "unknown_user",
                f"No user {user_id!r} in the directory: import the CRM users"
                " (`mailops directory import --users users.csv`) or set USER_ID.",
            )
        )
    if "mailbox" in needs and not connected:
        out.gaps.append(
            Gap(
                "no_connected_mailbox",
                f"{user_id} has no connected mailbox: connect one first (connect_mailbox"
                " notebook or `mailops mailbox connect`).",
            )
        )
    if "customers" in needs and not customers:
        out.gaps.append(
            Gap(
                "no_customers",
                "No customers in the directory yet: import the CRM export"
                " (`mailops directory import --customers customers.csv`).",
            )
        )
    return out
