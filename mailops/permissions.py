"""P1: who sees which emails and who may send. Every report query filters through a Viewer.

Roles (``users.role``):

=========  ==========================================  ==========  =============
role       mailboxes, ledger rows, activities he sees  bodies      may send
=========  ==========================================  ==========  =============
sales      his own mailboxes; activities of his own    own only    ``can_send``
           mailboxes or of customers he owns
manager    everyone of his ``team`` (all when he has   team        ``can_send``
           no team)
it         all mailboxes, ledger and activities        no          no
           (metadata: address, subject, Message-ID)
admin      all                                         all         ``can_send``
=========  ==========================================  ==========  =============

``SYSTEM`` (user id ``"system"``) is the unattended scheduler (cron / papermill runs): it
sees everything and sends nothing. Naming a viewer is not authentication -- whoever can
read the DuckDB file can read it all; the hook decides what a report *shows*.

Filters are SQL fragments with ``?`` parameters so every query (library, CLI, notebooks)
applies the same rule: ``sql, params = viewer.mailbox_clause("m.owner_user_id")``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mailops.errors import PermissionDenied
from mailops.store import Store

__all__ = [
    "ROLES",
    "SYSTEM",
    "SYSTEM_USER",
    "Viewer",
    "can_send",
    "can_view_mailbox",
    "require_mailbox",
    "scope_for",
]

ROLES = ("sales", "manager", "it", "admin")
SYSTEM_USER = "system"


@dataclass(frozen=True)
class Viewer:
    """Who is looking, and the set of users whose mail he may see (None = everyone)."""

    user_id: str
    role: str
    team: str | None = None
    may_send: bool = False
    visible_users: frozenset[str] | None = field(default=None)

    @property
    def sees_all(self) -> bool:
        return self.visible_users is None

    @property
    def reads_bodies(self) -> bool:
        """IT audits metadata only; it never needs to read what customers wrote."""
        return self.role != "it"

    @property
    def scope(self) -> str:
        """A short label for file names and report headers: ``all``, ``team-x``, ``user-1``."""
        if self.sees_all:
            return "all"
        if self.role == "manager" and self.team:
            return f"team-{self.team}"
        return self.user_id

    def sees_user(self, user_id: str | None) -> bool:
        return self.visible_users is None or (user_id in self.visible_users)

    def _users(self) -> list[str]:
        return sorted(self.visible_users or ())

    def mailbox_clause(self, owner_col: str) -> tuple[str, list[Any]]:
        """SQL restricting rows to mailboxes owned by a visible user."""
        if self.sees_all:
            return "TRUE", []
        return f"list_contains(?, {owner_col})", [self._users()]

    def activity_clause(self, user_col: str, customer_owner_col: str) -> tuple[str, list[Any]]:
        """SQL restricting activities: through a visible user's mailbox, or of a customer
        a visible user owns (a sales person sees the mail of his customers that a
        colleague's mailbox synced)."""
        if self.sees_all:
            return "TRUE", []
        users = self._users()
        return (
            f"(list_contains(?, {user_col}) OR list_contains(?, {customer_owner_col}))",
            [users, users],
        )


SYSTEM = Viewer(user_id=SYSTEM_USER, role="admin", may_send=False, visible_users=None)


def scope_for(store: Store, user_id: str | None) -> Viewer:
    """The Viewer for USER_ID (a CRM user id or e-mail address); ``system``/empty = SYSTEM.

    Raises PermissionDenied for unknown or inactive users and unknown roles.
    """
    ref = (user_id or "").strip()
    if ref in ("", SYSTEM_USER):
        return SYSTEM
    rows = store.rows(
        "SELECT id, role, team, can_send, active FROM users WHERE id = ? OR lower(email) = ?"
        " ORDER BY id = ? DESC LIMIT 1",
        [ref, ref.lower(), ref],
    )
    if not rows:
        raise PermissionDenied(
            f"unknown user {ref!r}", guidance="name a CRM user id or e-mail address"
        )
    uid, role, team, may_send, active = rows[0]
    if not active:
        raise PermissionDenied(f"user {uid} is not active")
    role = (role or "sales").lower()
    if role not in ROLES:
        raise PermissionDenied(f"user {uid} has an unknown role {role!r}")
    visible: frozenset[str] | None
    if role in ("admin", "it"):
        visible = None
    elif role == "manager":
        if team:
            members = store.rows("SELECT id FROM users WHERE team = ?", [team])
            visible = frozenset({uid, *(r[0] for r in members)})
        else:
            visible = None
    else:
        visible = frozenset({uid})
    return Viewer(
        user_id=uid,
        role=role,
        team=team,
        may_send=bool(may_send) and role != "it",
        visible_users=visible,
    )


def _viewer(store: Store, who: Viewer | str | None) -> Viewer:
    return who if isinstance(who, Viewer) else scope_for(store, who)


def can_view_mailbox(store: Store, who: Viewer | str | None, mailbox_id: int) -> bool:
    viewer = _viewer(store, who)
    owner = store.scalar("SELECT owner_user_id FROM mailboxes WHERE id = ?", [mailbox_id])
    return owner is not None and viewer.sees_user(owner)


def require_mailbox(store: Store, who: Viewer | str | None, mailbox_id: int) -> None:
    if not can_view_mailbox(store, who, mailbox_id):
        raise PermissionDenied(f"mailbox {mailbox_id} is not visible to this user")


def can_send(store: Store, user_id: str) -> bool:
    """E1/P1: the Activities permission (``users.can_send``) of an active, non-IT user."""
    try:
        viewer = scope_for(store, user_id)
    except PermissionDenied:
        return False
    return viewer.may_send
