"""Company policy settings an admin decides (P2 default visibility), and the per-mailbox
visibility its owner chooses; every change is recorded in ``policy_changes``."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from mailops.store import Store

__all__ = ["get", "history", "set_mailbox_visibility", "set_value", "visibility_default"]

DEFAULTS = {"visibility": "everything"}


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _has_table(store: Store) -> bool:
    # a read-only store opened before migration 0041 has no policy table yet
    return bool(
        store.scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'company_policy'"
        )
    )


def get(store: Store, key: str) -> str | None:
    if not _has_table(store):
        return DEFAULTS.get(key)
    value = store.scalar("SELECT value FROM company_policy WHERE key = ?", [key])
    return DEFAULTS.get(key) if value is None else str(value)


def visibility_default(store: Store) -> str:
    return get(store, "visibility") or "everything"


def set_value(store: Store, key: str, value: str, *, by: str) -> str | None:
    """Set a company policy value; returns the old one."""
    with store.transaction():
        old = store.scalar("SELECT value FROM company_policy WHERE key = ?", [key])
        store.execute(
            "INSERT INTO company_policy (key, value, set_by, set_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value, set_by = excluded.set_by,"
            " set_at = excluded.set_at",
            [key, value, by, _now()],
        )
        _record(store, "company", key, old, value, by)
    return None if old is None else str(old)


def set_mailbox_visibility(store: Store, mailbox_id: int, level: str | None, *, by: str) -> None:
    with store.transaction():
        old = store.scalar("SELECT visibility FROM mailboxes WHERE id = ?", [mailbox_id])
        store.execute("UPDATE mailboxes SET visibility = ? WHERE id = ?", [level, mailbox_id])
        _record(store, f"mailbox:{mailbox_id}", "visibility", old, level, by)


def _record(
    store: Store, scope: str, key: str, old: str | None, new: str | None, by: str | None
) -> None:
    store.execute(
        "INSERT INTO policy_changes (scope, key, old_value, new_value, by_user_id, changed_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [scope, key, old, new, by, _now()],
    )


def history(store: Store) -> pd.DataFrame:
    return store.query(
        "SELECT id, scope, key, old_value, new_value, by_user_id, changed_at"
        " FROM policy_changes ORDER BY id"
    )
