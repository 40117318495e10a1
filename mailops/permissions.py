"""P1 / P2: who sees which emails, how much of each, and who may send -- ONE check.

Every read of messages, the ledger, runs, activities, the outbox, drafts, notifications and
customers (store functions, report queries, the CLI, widgets, notebooks) asks
``visible(viewer, kind, ...)`` for its SQL: the rows the viewer may see (``where``/``params``)
and, per row, whether he may see the subject and headers (``subject_ok``) and read the body
and attachments (``body_ok``). Nothing else decides it; ``tests/test_permissions_p1.py``
fails when a query of those tables does not ask.

Roles (``users.role``) decide the scope and whether bodies may be read at all:

=========  ==========================================  ==========  =============
role       mailboxes, ledger rows, activities he sees  bodies      may send
=========  ==========================================  ==========  =============
sales      his own mailboxes; activities of his own    yes         ``can_send``
           mailboxes or of customers he owns
manager    everyone of his ``team`` (all when he has   yes         ``can_send``
           no team)
it         all mailboxes, ledger and activities        never       no
admin      all                                         yes         ``can_send``
=========  ==========================================  ==========  =============

P2 visibility levels, per mailbox, chosen by its owner (``mailboxes.visibility``; NULL =
the company policy ``visibility``, default ``everything``): ``everything``; ``subject``
(headers and subject, no body or attachments); ``metadata`` (who, when, direction: no
subject either). A level binds every viewer but the mailbox's owner, who always sees his
own mail whole. Seeing that an email exists and reading it are separate permissions: a
body needs the role's body permission AND level ``everything`` (or being the owner).

``SYSTEM`` (user id ``"system"``) is the unattended scheduler (cron / papermill runs): it
sees every row, sends nothing, and is bound by the levels like anyone but the owner (its
reports are read by others). Naming a viewer is not authentication -- whoever can read the
DuckDB file can read it all; the check decides what mailops *shows*.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mailops.errors import PermissionDenied

if TYPE_CHECKING:
    from mailops.store import Store

__all__ = [
    "KINDS",
    "LEVELS",
    "ROLES",
    "SYSTEM",
    "SYSTEM_USER",
    "Access",
    "Viewer",
    "activity_access",
    "can_send",
    "can_view_mailbox",
    "require_mailbox",
    "scope_for",
    "viewer_of",
    "visible",
]

ROLES = ("sales", "manager", "it", "admin")
LEVELS = ("everything", "subject", "metadata")
DEFAULT_LEVEL = "everything"
SYSTEM_USER = "system"
# what a query reads -> how its rows are scoped
KINDS = (
    "mailbox",  # mailboxes, sync runs, folder reports, ledger rows, message places
    "activity",  # activities (and the messages read through them)
    "customer",  # customers (compose choices, search)
    "outbox",  # outbox entries
    "draft",  # drafts: their author only (admin: all)
    "notification",  # notifications: their recipient; a team manager his team's; admin all
)


def _lit(value: str) -> str:
    """A SQL string literal (standard quoting: DuckDB treats backslashes as plain text)."""
    return "'" + str(value).replace("'", "''") + "'"


@dataclass(frozen=True)
class Access:
    """What one query may read: ``where``/``params`` filter rows; ``subject_ok`` and
    ``body_ok`` are SQL booleans (no parameters) evaluated per row."""

    where: str
    params: list[Any]
    subject_ok: str = "TRUE"
    body_ok: str = "TRUE"

    def subject(self, expr: str, alias: str) -> str:
        """``expr AS alias`` when the row's subject may be shown, else NULL."""
        return f"CASE WHEN {self.subject_ok} THEN {expr} END AS {alias}"

    def body(self, expr: str, alias: str) -> str:
        return f"CASE WHEN {self.body_ok} THEN {expr} END AS {alias}"

    def levels(self, alias: str = "shown") -> str:
        """A column naming what the row shows: ``everything`` / ``subject`` / ``metadata``."""
        return (
            f"CASE WHEN {self.body_ok} THEN 'everything' WHEN {self.subject_ok} THEN 'subject'"
            f" ELSE 'metadata' END AS {alias}"
        )


@dataclass(frozen=True)
class Viewer:
    """Who is looking, and the set of users whose mail he may see (None = everyone)."""

    user_id: str
    role: str
    team: str | None = None
    may_send: bool = False
    visible_users: frozenset[str] | None = field(default=None)
    default_level: str = DEFAULT_LEVEL  # the company policy (P2)

    @property
    def sees_all(self) -> bool:
        return self.visible_users is None

    @property
    def reads_bodies(self) -> bool:
        """IT audits metadata only; it never needs to read what customers wrote."""
        return self.role != "it"

    @property
    def is_system(self) -> bool:
        return self.user_id == SYSTEM_USER

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

    # -- compatibility wrappers (report code written before ``visible``) ----------------
    def mailbox_clause(self, owner_col: str) -> tuple[str, list[Any]]:
        a = visible(self, "mailbox", owner=owner_col)
        return a.where, a.params

    def activity_clause(self, user_col: str, customer_owner_col: str) -> tuple[str, list[Any]]:
        a = visible(self, "activity", user=user_col, customer_owner=customer_owner_col)
        return a.where, a.params


def _level_expr(viewer: Viewer, level: str | None) -> str:
    default = viewer.default_level if viewer.default_level in LEVELS else DEFAULT_LEVEL
    return f"coalesce({level}, {_lit(default)})" if level else _lit(default)


def visible(
    viewer: Viewer,
    kind: str,
    *,
    owner: str | None = None,
    level: str | None = None,
    user: str | None = None,
    customer_owner: str | None = None,
) -> Access:
    """THE permission check (P1, P2): the SQL a query of KIND must apply for VIEWER.

    Column arguments name the query's columns: ``owner`` the owning user of the mailbox
    the row came through, ``level`` that mailbox's ``visibility``, ``user`` the row's user
    (activity: the mailbox owner at sync time; outbox/draft: the author; notification: the
    recipient), ``customer_owner`` the customer's owner."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    users = viewer._users()
    # -- rows (P1 scope) ------------------------------------------------------------------
    where: str
    params: list[Any]
    if kind in ("draft", "notification"):
        col = user or owner
        if col is None:
            raise ValueError(f"{kind} needs user=")
        if viewer.is_system or viewer.role == "admin":
            where, params = "TRUE", []
        elif kind == "notification" and viewer.role == "manager" and viewer.visible_users:
            where, params = f"list_contains(?, {col})", [users]  # his team's too
        else:
            where, params = f"{col} = ?", [viewer.user_id]
    elif viewer.sees_all:
        where, params = "TRUE", []
    elif kind == "activity":
        if user is None or customer_owner is None:
            raise ValueError("activity needs user= and customer_owner=")
        where = f"(list_contains(?, {user}) OR list_contains(?, {customer_owner}))"
        params = [users, users]
    else:
        col = {"mailbox": owner, "customer": customer_owner, "outbox": user or owner}[kind]
        if col is None:
            raise ValueError(f"{kind} needs its owner column")
        where, params = f"list_contains(?, {col})", [users]
    # -- how much of each row (P2) -------------------------------------------------------
    mine = f"{owner} = {_lit(viewer.user_id)}" if owner else "FALSE"
    if kind in ("draft", "notification"):
        # a draft is its author's own text; a notification names a message, read separately
        return Access(where, params, "TRUE", "TRUE" if viewer.reads_bodies else "FALSE")
    if kind == "customer":
        return Access(where, params, "TRUE", "FALSE")
    lvl = _level_expr(viewer, level)
    subject_ok = f"({mine} OR {lvl} IN ('everything', 'subject'))"
    body_ok = f"({mine} OR {lvl} = 'everything')" if viewer.reads_bodies else f"({mine})"
    if viewer.role == "it":
        body_ok = "FALSE"  # IT audits without bodies, even of a mailbox of its own
    return Access(where, params, subject_ok, body_ok)


SYSTEM = Viewer(user_id=SYSTEM_USER, role="admin", may_send=False, visible_users=None)


def activity_access(viewer: Viewer) -> Access:
    """``visible`` for the usual activity join: ``activities a``, ``customers c`` on the
    activity's customer and ``mailboxes mb`` on its mailbox."""
    return visible(
        viewer,
        "activity",
        user="a.user_id",
        customer_owner="c.owner_user_id",
        owner="mb.owner_user_id",
        level="mb.visibility",
    )


def scope_for(store: Store, user_id: str | None) -> Viewer:
    """The Viewer for USER_ID (a CRM user id or e-mail address); ``system``/empty = SYSTEM.

    Raises PermissionDenied for unknown or inactive users and unknown roles.
    """
    from mailops.store import directory, policy

    default = policy.visibility_default(store)
    ref = (user_id or "").strip()
    if ref in ("", SYSTEM_USER):
        return Viewer(
            user_id=SYSTEM_USER,
            role="admin",
            may_send=False,
            visible_users=None,
            default_level=default,
        )
    user = directory.find_user_by_ref(store, ref)
    if user is None:
        raise PermissionDenied(
            f"unknown user {ref!r}", guidance="name a CRM user id or e-mail address"
        )
    if not user.active:
        raise PermissionDenied(f"user {user.id} is not active")
    role = (user.role or "sales").lower()
    if role not in ROLES:
        raise PermissionDenied(f"user {user.id} has an unknown role {role!r}")
    visible_users: frozenset[str] | None
    if role in ("admin", "it"):
        visible_users = None
    elif role == "manager":
        if user.team:
            visible_users = frozenset({user.id, *directory.team_members(store, user.team)})
        else:
            visible_users = None
    else:
        visible_users = frozenset({user.id})
    return Viewer(
        user_id=user.id,
        role=role,
        team=user.team,
        may_send=bool(user.can_send) and role != "it",
        visible_users=visible_users,
        default_level=default,
    )


def viewer_of(store: Store, who: Viewer | str | None) -> Viewer:
    """A Viewer as given, or resolved from a user id / address (``None`` = SYSTEM)."""
    return who if isinstance(who, Viewer) else scope_for(store, who)


def can_view_mailbox(store: Store, who: Viewer | str | None, mailbox_id: int) -> bool:
    from mailops.store import mailboxes

    viewer = viewer_of(store, who)
    owner = mailboxes.owner_of_mailbox(store, mailbox_id)
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
