"""R5: the work a scheduled notebook does before it reports (sync every connected mailbox)."""

from __future__ import annotations

from mailops.config import Settings
from mailops.store import Store
from mailops.store import mailboxes as mailbox_store

__all__ = ["sync_connected"]


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
