"""X1: dry run of a rule change -- which already-examined messages would change decision.

A proposed change (never-log entries added or dropped, another backfill window, another
folder choice, the internal-mail policy) is replayed with the pure ``match.decide`` on the
headers the ledger kept (To/Cc, INTERNALDATE and flags since migration 0043; before that the
stored message's, else From only, and the row says it is uncertain). Nothing is written
and no server is asked: the CLI opens the store read-only.

The comparison is between the rules in force now and the proposed ones, both replayed on
the same headers, so a directory change since a message was examined (a new customer)
does not pass for an effect of the proposal; ``drift`` counts the rows where today's rules
already decide otherwise than the ledger recorded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from mailops.config import Settings
from mailops.errors import MailopsError
from mailops.match import INTERNAL_POLICIES, Directory, FolderInfo, decide
from mailops.parse import HeaderInfo
from mailops.permissions import Viewer
from mailops.store import Store
from mailops.store import sync as syncstore

__all__ = ["DryRun", "RuleChange", "dry_run", "parse_entry"]

# recorded reasons a rule change cannot alter (no header replays them differently)
FIXED = {"too_large", "malformed", "excluded_folder", "draft"}
NEVER_LOG_KINDS = syncstore.NEVER_LOG_KINDS


@dataclass
class RuleChange:
    """A proposal. Never-log entries are ``(kind, value, user_id or None)``."""

    add_never_log: list[tuple[str, str, str | None]] = field(default_factory=list)
    drop_never_log: list[tuple[str, str, str | None]] = field(default_factory=list)
    backfill_days: int | None = None  # every mailbox's window
    folders: dict[int, list[str] | None] = field(default_factory=dict)  # mailbox id -> choice
    internal_policy: str | None = None

    def describe(self) -> str:
        parts = [
            f"never-log + {k}:{v}" + (f" (for {u})" if u else "") for k, v, u in self.add_never_log
        ]
        parts += [
            f"never-log - {k}:{v}" + (f" (for {u})" if u else "") for k, v, u in self.drop_never_log
        ]
        if self.backfill_days is not None:
            parts.append(f"window {self.backfill_days} days")
        parts += [
            f"mailbox {m} folders {', '.join(f) if f else 'default'}"
            for m, f in self.folders.items()
        ]
        if self.internal_policy:
            parts.append(f"internal policy {self.internal_policy}")
        return "; ".join(parts) or "no change"


def parse_entry(text: str, user: str | None = None) -> tuple[str, str, str | None]:
    """``address:a@b`` / ``domain:b.test`` / ``customer:c-1`` -> (kind, value, user)."""
    kind, sep, value = text.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in NEVER_LOG_KINDS or not value.strip():
        raise MailopsError(
            f"bad never-log entry {text!r}",
            code="bad_never_log",
            guidance="write KIND:VALUE, KIND one of address, domain, customer",
        )
    value = value.strip()
    return kind, value if kind == "customer" else value.lower().lstrip("@"), user


@dataclass
class DryRun:
    change: RuleChange
    examined: int
    changed: pd.DataFrame  # one row per message whose decision would change
    drift: int  # rows where today's rules already differ from the ledger
    uncertain: int  # changed rows replayed on From only (older ledger rows)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.changed.empty:
            head = f"{self.examined} examined message(s): none would change decision"
        else:
            moves = self.changed.groupby(["now", "would"]).size()
            parts = [f"{n} {a} -> {b}" for (a, b), n in moves.items()]
            head = (
                f"{self.examined} examined message(s): {len(self.changed)} would change"
                f" decision ({'; '.join(parts)})"
            )
        extra = [*self.notes]
        if self.uncertain:
            extra.append(
                f"{self.uncertain} of them replayed on From only (examined before To/Cc were kept)"
            )
        if self.drift:
            extra.append(
                f"{self.drift} already decide otherwise under today's rules than when examined"
            )
        return head + "".join(f"\n  note: {n}" for n in extra)

    def to_json(self) -> str:
        rows = json.loads(self.changed.to_json(orient="records", date_format="iso"))
        return json.dumps(
            {
                "change": self.change.describe(),
                "examined": self.examined,
                "would_change": len(rows),
                "uncertain": self.uncertain,
                "drift": self.drift,
                "notes": self.notes,
                "messages": rows,
            },
            ensure_ascii=False,
        )


def _directories(
    store: Store, settings: Settings, change: RuleChange
) -> tuple[Directory, Directory]:
    rows = syncstore.directory_rows(store)
    policy = settings.internal_policy
    now = Directory.build(internal_policy=policy, **rows)
    never_log = [tuple(r) for r in rows["never_log"]]

    def norm(e: Sequence[Any]) -> tuple[str, str, str | None]:
        kind, value, user = e[0], e[1], e[2]
        return kind, value if kind == "customer" else str(value).strip().lower().lstrip("@"), user

    dropped = {norm(e) for e in change.drop_never_log}
    drop_any_user = {(k, v) for k, v, u in dropped if u is None}
    kept = [
        e for e in map(norm, never_log) if e not in dropped and (e[0], e[1]) not in drop_any_user
    ]
    kept += [norm(e) for e in change.add_never_log]
    proposed_rows = dict(rows, never_log=kept)
    proposed_policy = change.internal_policy or policy
    if proposed_policy not in INTERNAL_POLICIES:
        raise MailopsError(f"unknown internal policy {proposed_policy!r}", code="config")
    return now, Directory.build(internal_policy=proposed_policy, **proposed_rows)


def _window(row: Any, days: int | None, default_days: int) -> datetime | None:
    connected = row.connected_at
    if connected is None or pd.isna(connected):
        return None
    own = (
        row.backfill_days
        if row.backfill_days is not None and not pd.isna(row.backfill_days)
        else None
    )
    n = days if days is not None else (int(own) if own is not None else default_days)
    return pd.Timestamp(connected).to_pydatetime() - timedelta(days=int(n))


def _when(v: Any) -> datetime | None:
    return None if v is None or pd.isna(v) else pd.Timestamp(v).to_pydatetime()


def _list(v: Any) -> list[str]:
    return [] if v is None or (isinstance(v, float) and pd.isna(v)) else [str(a) for a in v]


def _replay(row: Any, directory: Directory, window: datetime | None) -> tuple[str, str]:
    headers = HeaderInfo(
        message_id=row.message_id,
        from_addr=row.from_addr,
        to_addrs=_list(row.to_addrs),
        cc_addrs=_list(row.cc_addrs),
        date=_when(row.msg_date),
        subject=None,
    )
    d = decide(
        headers,
        FolderInfo(row.folder),
        str(row.flags or "").split(),
        directory,
        row.mailbox,
        window,
        user_id=row.owner,
        internaldate=_when(row.internaldate) or _when(row.msg_date),
    )
    return d.decision, d.reason


def dry_run(store: Store, settings: Settings, change: RuleChange, *, viewer: Viewer) -> DryRun:
    """Which examined messages VIEWER may see would change decision under CHANGE. Reads
    only (the ledger, the directory, the stored headers); writes nothing."""
    frame = syncstore.examined_latest(store, viewer=viewer)
    current, proposed = _directories(store, settings, change)
    out: list[dict[str, Any]] = []
    drift = 0
    for row in frame.itertuples(index=False):
        if row.decision not in ("stored", "skipped") or row.reason in FIXED:
            continue  # errors (S15) and header-independent skips stay as they are
        window_now = _window(row, None, settings.backfill_days)
        now = _replay(row, current, window_now)
        if now != (row.decision, row.reason):
            drift += 1
        choice = change.folders.get(int(row.mailbox_id), "unchanged")
        if choice != "unchanged" and choice and row.folder not in choice:
            would = ("not_examined", "not_selected")
        else:
            window = _window(row, change.backfill_days, settings.backfill_days)
            would = _replay(row, proposed, window)
        if would[1] == now[1]:
            continue
        out.append(
            {
                "mailbox": row.mailbox,
                "folder": row.folder,
                "uid": int(row.uid),
                "message_id": row.message_id,
                "msg_date": _when(row.msg_date),
                "from_addr": row.from_addr,
                "subject": row.subject,
                "now": now[1],
                "would": would[1],
                "would_decision": would[0],
                "certain": bool(row.headers_known),
                "last_run": int(row.run_id),
            }
        )
    changed = pd.DataFrame(
        out,
        columns=[
            "mailbox", "folder", "uid", "message_id", "msg_date", "from_addr", "subject",
            "now", "would", "would_decision", "certain", "last_run",
        ],
    )  # fmt: skip
    notes = []
    for mailbox_id, choice in change.folders.items():
        if choice:
            examined = set(frame.loc[frame["mailbox_id"] == mailbox_id, "folder"])
            new = [f for f in choice if f not in examined]
            if new:
                notes.append(
                    f"mailbox {mailbox_id}: {', '.join(new)} never examined yet; what they hold"
                    " is only known on the server (the next sync examines them)"
                )
    if change.backfill_days is not None:
        notes.append(
            "a wider window also reaches mail the sync never examined (older than the first"
            " sync's window): it is on the server only, counted as not examined (S11)"
        )
    return DryRun(
        change=change,
        examined=len(frame),
        changed=changed,
        drift=drift,
        uncertain=int((~changed["certain"]).sum()) if len(changed) else 0,
        notes=notes,
    )
