"""P2: the visibility level of a mailbox (its owner's choice) and the company default (an
admin's). Both changes are recorded (``policy_changes``); the one check that applies them
is ``permissions.visible``."""

from __future__ import annotations

from mailops.errors import MailopsError, PermissionDenied
from mailops.permissions import LEVELS, scope_for
from mailops.store import Store, mailboxes, policy

__all__ = ["LEVELS", "mailbox_level", "set_company_default", "set_mailbox_level"]


def _check_level(level: str) -> str:
    level = level.strip().lower()
    if level not in LEVELS:
        raise MailopsError(
            f"unknown visibility level {level!r}",
            code="bad_level",
            guidance=f"one of {', '.join(LEVELS)} (or 'default' for a mailbox)",
        )
    return level


def mailbox_level(store: Store, ref: str | int) -> tuple[str, bool]:
    """(level in force, True when it is the company default)."""
    mb = mailboxes.find(store, ref, include_disconnected=True)
    if mb.visibility:
        return mb.visibility, False
    return policy.visibility_default(store), True


def set_mailbox_level(store: Store, ref: str | int, level: str, *, actor: str) -> str:
    """The owner chooses what others see of his mailbox; ``default`` = the company policy."""
    mb = mailboxes.find(store, ref, include_disconnected=True)
    viewer = scope_for(store, actor)
    if viewer.user_id != mb.owner_user_id:
        raise PermissionDenied(
            f"{viewer.user_id} cannot choose the visibility of {mb.address}",
            guidance="a mailbox's owner chooses what others see of it (P2)",
        )
    value = None if level.strip().lower() == "default" else _check_level(level)
    policy.set_mailbox_visibility(store, mb.id, value, by=viewer.user_id)
    return value or f"default ({policy.visibility_default(store)})"


def set_company_default(store: Store, level: str, *, actor: str) -> str | None:
    viewer = scope_for(store, actor)
    if viewer.is_system or viewer.role != "admin":
        raise PermissionDenied(
            f"{actor} cannot set the company policy", guidance="an admin sets it (--as ADMIN)"
        )
    return policy.set_value(store, "visibility", _check_level(level), by=viewer.user_id)
