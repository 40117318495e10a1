"""R5: the work a scheduled notebook does before it reports (sync every connected mailbox)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mailops.config import Settings
from mailops.store import Store
from mailops.store import mailboxes as mailbox_store

__all__ = ["SyncJob", "sync_connected", "sync_job"]


def sync_connected(
    mailbox: str = "all", *, trigger: str = "schedule", settings: Settings | None = None
) -> list[int]:
    """Sync every connected mailbox (or one, by address or id); return the run ids.

    The store is opened for writing only for the sync and closed before the report reads."""
    from mailops.sync import sync_all

    settings = settings or Settings.load()
    store = Store(settings.db)
    try:
        if mailbox in ("", "all"):
            todo = None
        else:
            todo = [mailbox_store.find(store, mailbox)]
        results = sync_all(store, settings, mailboxes=todo, trigger=trigger)
    finally:
        store.close()
    return [r.run_id for r in results if r.run_id is not None]


@dataclass
class SyncJob:
    """What the scheduled sync did: one result per mailbox, and its O1 exit code."""

    results: list[Any] = field(default_factory=list)

    @property
    def run_ids(self) -> list[int]:
        return [r.run_id for r in self.results if r.run_id is not None]

    @property
    def exit_code(self) -> int:
        from mailops.outcomes import exit_code

        return exit_code(self.results)

    def outcomes(self, scope: Any = None) -> pd.DataFrame:
        """One row per mailbox: outcome, and for the others why (O1). With SCOPE, only the
        mailboxes its viewer may see (P1)."""
        from mailops.outcomes import outcome_of
        from mailops.permissions import can_view_mailbox

        return pd.DataFrame(
            [
                {
                    "mailbox": r.address,
                    "outcome": outcome_of(r),
                    "examined": r.examined,
                    "stored": r.stored,
                    "code": r.error_code or "",
                    "problematic_since": r.problem_since,
                    "next_probe_at": r.next_probe_at,
                    "detail": "" if r.status == "ok" and not r.recovered else r.one_line(),
                }
                for r in self.results
                if scope is None
                or scope.viewer.sees_all
                or can_view_mailbox(scope.store, scope.viewer, r.mailbox_id)
            ],
            columns=[
                "mailbox", "outcome", "examined", "stored", "code", "problematic_since",
                "next_probe_at", "detail",
            ],
        )  # fmt: skip

    def raise_if_incomplete(self) -> None:
        """The notebook's last cell: a failed or skipped mailbox fails the job (O1), after
        everything above it has been shown."""
        from mailops.errors import SyncIncomplete
        from mailops.outcomes import worst

        code, meaning = worst(self.results)
        if code:
            lines = [r.one_line() for r in self.results if r.status != "ok"]
            raise SyncIncomplete(
                f"{meaning}: " + "; ".join(lines),
                exit_code=code,
                code={10: "mailbox_problematic", 11: "already_syncing"}.get(code, "sync_failed"),
            )


def sync_job(
    mailbox: str = "all", *, trigger: str = "schedule", settings: Settings | None = None
) -> SyncJob:
    """Sync every connected mailbox (or one) and probe the problematic ones that are due."""
    from mailops.sync import sync_all

    settings = settings or Settings.load()
    store = Store(settings.db)
    try:
        todo = None if mailbox in ("", "all") else [mailbox_store.find(store, mailbox)]
        return SyncJob(sync_all(store, settings, mailboxes=todo, trigger=trigger))
    finally:
        store.close()
