"""S9 selective synchronisation: which folders a user syncs, what is never logged, and
unlinking a stored message from a customer.

- Folder choice is per mailbox (``mailboxes.sync_folders``), set by its owner; the sync
  examines only those folders and counts the others as not examined (S11).
- Never-log entries (address, domain, customer) are company-wide (an admin's) or one
  user's (his own); ``match.decide`` applies them on the headers, before any body is
  fetched, and the ledger names which kind skipped each message.
- Unlinking hides a stored message from one customer's activities (the row is kept, and a
  later sync does not link it again); each unlink and relink is recorded in
  ``link_changes``; only an admin links a message back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mailops.errors import MailopsError, PermissionDenied
from mailops.permissions import Viewer, scope_for
from mailops.store import Store, mailboxes, messages
from mailops.store import sync as syncstore
from mailops.store.mailboxes import Mailbox

__all__ = [
    "add_never_log",
    "remove_never_log",
    "relink",
    "server_folders",
    "set_folders",
    "unlink",
]

KINDS = syncstore.NEVER_LOG_KINDS


def _viewer(store: Store, who: Viewer | str | None) -> Viewer:
    return who if isinstance(who, Viewer) else scope_for(store, who)


def _check_value(kind: str, value: str) -> str:
    value = (value or "").strip()
    if kind not in KINDS:
        raise MailopsError(f"unknown never-log kind {kind!r}", code="bad_never_log")
    if kind == "address" and ("@" not in value or value.startswith("@") or value.endswith("@")):
        raise MailopsError(f"{value!r} is not an email address", code="bad_address")
    if kind == "domain" and ("." not in value.lstrip("@") or "@" in value.lstrip("@")):
        raise MailopsError(f"{value!r} is not a domain", code="bad_domain")
    if not value or "\r" in value or "\n" in value:
        raise MailopsError(f"bad never-log value {value!r}", code="bad_never_log")
    return value


def _owner_of_entry(viewer: Viewer, company: bool, user: str | None) -> str | None:
    """Who the entry is for (None = company-wide), if VIEWER may change it."""
    if company:
        if viewer.role != "admin" or viewer.is_system:
            raise PermissionDenied(
                f"{viewer.user_id} cannot change the company's never-log list",
                guidance="an admin does (--company --as ADMIN); or add it for yourself",
            )
        return None
    target = user or viewer.user_id
    if target != viewer.user_id and viewer.role != "admin":
        raise PermissionDenied(f"{viewer.user_id} cannot change {target}'s never-log list")
    if target == "system":
        raise PermissionDenied("name a user (--as USER) or --company")
    return target


def add_never_log(
    store: Store,
    who: Viewer | str | None,
    kind: str,
    value: str,
    *,
    company: bool = False,
    user: str | None = None,
) -> bool:
    """Never log mail with this address / domain / customer, for WHO (or another user, by
    an admin) or company-wide (admins). Applies from the next sync on; mail already stored
    stays (unlink it, or erase the person, G1)."""
    viewer = _viewer(store, who)
    target = _owner_of_entry(viewer, company, user)
    return syncstore.add_never_log(
        store, kind, _check_value(kind, value), target, by=viewer.user_id
    )


def remove_never_log(
    store: Store,
    who: Viewer | str | None,
    kind: str,
    value: str,
    *,
    company: bool = False,
    user: str | None = None,
) -> bool:
    viewer = _viewer(store, who)
    target = _owner_of_entry(viewer, company, user)
    return syncstore.remove_never_log(store, kind, _check_value(kind, value), target)


# -- unlink / relink ---------------------------------------------------------------------
def _activity_visible(store: Store, viewer: Viewer, message_id: str, customer_id: str) -> bool:
    df = messages.customer_activities(store, customer_id, viewer=viewer, include_unlinked=True)
    return bool((df["message_id"] == message_id).any())


def unlink(
    store: Store,
    who: Viewer | str | None,
    message_id: str,
    customer_id: str,
    *,
    reason: str | None = None,
) -> bool:
    """Hide stored MESSAGE_ID from CUSTOMER_ID's activities (anyone who sees that activity
    may); recorded. False when it was unlinked already."""
    viewer = _viewer(store, who)
    key = _message_key(message_id)
    if viewer.is_system or not _activity_visible(store, viewer, key, customer_id):
        raise PermissionDenied(
            f"no activity of {customer_id} for message {message_id!r} visible to {viewer.user_id}"
        )
    with store.transaction():
        done = messages.unlink_activity(store, key, customer_id, by=viewer.user_id)
        if done:
            messages.record_link_change(store, key, customer_id, "unlink", viewer.user_id, reason)
    return done


def relink(
    store: Store,
    who: Viewer | str | None,
    message_id: str,
    customer_id: str,
    *,
    reason: str | None = None,
) -> bool:
    """An admin undoes an unlink (recorded)."""
    viewer = _viewer(store, who)
    if viewer.role != "admin" or viewer.is_system:
        raise PermissionDenied(
            f"{viewer.user_id} cannot link a message back", guidance="an admin does (S9)"
        )
    key = _message_key(message_id)
    with store.transaction():
        done = messages.relink_activity(store, key, customer_id)
        if done:
            messages.record_link_change(store, key, customer_id, "relink", viewer.user_id, reason)
    return done


def _message_key(ref: str) -> str:
    from mailops.parse import normalize_message_id

    ref = ref.strip()
    return ref if ref.startswith("sha256:") else (normalize_message_id(ref) or ref)


# -- folder choice -----------------------------------------------------------------------
def set_folders(
    store: Store, who: Viewer | str | None, mailbox: str | int, folders: Sequence[str] | None
) -> Mailbox:
    """The owner's choice of folders to sync (None or empty = the default set)."""
    viewer = _viewer(store, who)
    mb = mailboxes.find(store, mailbox, include_disconnected=True)
    if viewer.user_id != mb.owner_user_id:
        raise PermissionDenied(
            f"{viewer.user_id} cannot choose the folders of {mb.address}",
            guidance="the mailbox's owner chooses what is synced (S9)",
        )
    clean = [f for f in dict.fromkeys(f.strip() for f in folders or ()) if f]
    for f in clean:
        if "\r" in f or "\n" in f or "\0" in f:
            raise MailopsError(f"bad folder name {f!r}", code="bad_folder")
    mailboxes.update(store, mb.id, sync_folders=json.dumps(clean) if clean else None)
    return mailboxes.get(store, mb.id)


def server_folders(mb: Mailbox, settings: Any) -> list[dict[str, Any]]:
    """The mailbox's folders on the server: name, special use, synced or why not (the same
    plan the sync makes, with the owner's choice)."""
    from mailops import imap
    from mailops.folders import plan_folders
    from mailops.imap import commands

    client = imap.login(mb, settings)
    try:
        listing = commands.list_folders(client)
    finally:
        imap.close_imap(client)
    chosen, skipped = plan_folders(listing, mb.folders)
    rows = [
        {"folder": f.name, "special_use": f.special_use or "", "synced": True, "why": ""}
        for f in chosen
    ]
    rows += [
        {"folder": f.name, "special_use": f.special_use or "", "synced": False, "why": why}
        for f, why in skipped
    ]
    return rows
