"""X1: why one email is or is not in the CRM, in one paragraph.

Search by Message-ID, by an address (From/To/Cc) and a date, or by words of the subject.
The store answers first: *stored* (where it was seen, for which customers, since which
run; unlinks), *skipped* (the rule, reason and run) from the ledger; an erased address
answers *erased* (the receipt). With ``server=True`` every folder of every mailbox the
viewer may see is searched on the server, at any date, and each message found there that
the ledger never examined is explained: its folder is not synced (and why), it is older
than the window, it is a draft, it arrived after the last sync, or it names an erased
person. Every read goes through the P1 check; subjects as the mailbox's level allows.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd

from mailops.config import Settings
from mailops.errors import MailopsError
from mailops.match import SKIP_REASONS, address_hash
from mailops.parse import normalize_message_id
from mailops.permissions import Viewer
from mailops.store import Store, erasure, mailboxes, messages
from mailops.store import sync as syncstore

__all__ = ["Finding", "explain", "findings_json"]


@dataclass
class Finding:
    state: str  # stored | skipped | error | not_examined | erased | not_found
    paragraph: str
    message_id: str | None = None
    subject: str | None = None
    from_addr: str | None = None
    date: str | None = None
    places: list[str] = field(default_factory=list)  # mailbox/folder
    customers: list[str] = field(default_factory=list)
    reason: str | None = None
    rule: str | None = None
    run: int | None = None


def _day(value: str | date | datetime | None) -> tuple[datetime | None, datetime | None]:
    if value in (None, ""):
        return None, None
    try:
        d = pd.Timestamp(str(value)).to_pydatetime().replace(tzinfo=None)
    except ValueError:
        raise MailopsError(
            f"not a date: {value!r}", code="bad_date", guidance="YYYY-MM-DD"
        ) from None
    start = datetime(d.year, d.month, d.day)
    return start, start + timedelta(days=1)


def _when(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and pd.isna(v)) or v is pd.NaT:
        return None
    try:
        return f"{pd.Timestamp(v):%Y-%m-%d %H:%M} UTC"
    except (ValueError, TypeError):
        return None


def _rule(reason: str) -> tuple[str, str]:
    r = SKIP_REASONS.get(reason)
    return (r.rule, r.description) if r else ("S15" if reason else "", reason)


def _quote(subject: Any) -> str:
    return f"“{subject}”" if isinstance(subject, str) and subject else "(subject not shown)"


def explain(
    store: Store,
    settings: Settings | None,
    viewer: Viewer,
    *,
    message_id: str | None = None,
    address: str | None = None,
    on: str | date | datetime | None = None,
    subject: str | None = None,
    server: bool = False,
) -> list[Finding]:
    """One Finding per email found (store first, then the server when asked)."""
    key = (normalize_message_id(message_id) or message_id.strip()) if message_id else None
    addr = address.strip().lower() if address else None
    words = [w for w in (subject or "").split() if w]
    if not (key or addr or words):
        raise MailopsError(
            "say which email",
            code="bad_query",
            guidance="--message-id, --address (and --date) or --subject",
        )
    since, until = _day(on)
    out: list[Finding] = []
    if addr and erasure.is_blocked(store, [address_hash(addr)]):
        out.append(
            Finding(
                "erased",
                f"Nothing of {addr} is in the CRM: that person was erased on request (G1); every"
                " later message naming the address is skipped on its headers, before its body"
                " is fetched, and the directory import leaves him out.",
                reason="erased",
                rule="G1",
            )
        )
    rows = syncstore.ledger_matches(
        store, viewer=viewer, message_id=key, address=addr, since=since, until=until, words=words
    )
    seen_places: set[tuple[int, str, int, int]] = set()
    for mid, group in rows.groupby(rows["message_id"].fillna("(no id)"), sort=False):
        out.append(_from_ledger(store, viewer, str(mid), group))
        for r in group.itertuples(index=False):
            seen_places.add((int(r.mailbox_id), r.folder, int(r.uidvalidity or 0), int(r.uid or 0)))
    if key and not any(f.message_id == key for f in out):
        msg = messages.get_message(store, key, viewer=viewer)  # sent by mailops, not yet synced
        if msg is not None:
            out.append(_stored(store, viewer, key, msg, None))
    if server:
        if settings is None:
            raise MailopsError("searching the server needs settings", code="config")
        out += _server(store, settings, viewer, key, addr, since, until, words, seen_places)
    if not out:
        out.append(
            Finding(
                "not_found",
                "No such email in the ledger of the mailboxes you may see"
                + (
                    ""
                    if server
                    else "; add --server to search every folder of them on the server, at any date"
                )
                + ".",
                message_id=key,
            )
        )
    return out


def _from_ledger(store: Store, viewer: Viewer, mid: str, group: pd.DataFrame) -> Finding:
    stored = group[group["decision"] == "stored"]
    last = group.iloc[0]
    if len(stored):
        msg = messages.get_message(store, mid, viewer=viewer)
        if msg is not None:
            return _stored(store, viewer, mid, msg, group)
    rule, description = _rule(str(last.reason))
    where = f"{last.mailbox} / {last.folder}"
    state = "skipped" if last.decision == "skipped" else str(last.decision)
    if mid == "erased":
        return Finding(
            "erased",
            f"A message examined in {where} by run {int(last.run_id)} named a person who was"
            " erased since (G1): its content is gone from the CRM, only the decision remains.",
            reason="erased",
            rule="G1",
            run=int(last.run_id),
        )
    text = (
        f"Not in the CRM: the message {mid} {_quote(last.subject)} from {last.from_addr or '?'}"
        f" dated {_when(last.msg_date) or 'unknown'} was {state} by run {int(last.run_id)}"
        f" ({_when(last.examined_at)}) in {where}: {last.reason} ({rule}) -- {description}."
    )
    if len(group) > 1:
        others = sorted({f"{r.mailbox} / {r.folder}" for r in group.itertuples()} - {where})
        if others:
            text += f" Also seen in {', '.join(others)}."
    return Finding(
        state,
        text,
        message_id=mid,
        subject=last.subject if isinstance(last.subject, str) else None,
        from_addr=last.from_addr,
        date=_when(last.msg_date),
        places=[where],
        reason=str(last.reason),
        rule=rule,
        run=int(last.run_id),
    )


def _stored(
    store: Store, viewer: Viewer, mid: str, msg: dict[str, Any], group: pd.DataFrame | None
) -> Finding:
    places = messages.message_places(store, mid, viewer=viewer)
    boxes = {m.id: m.address for m in mailboxes.all_mailboxes(store)}
    where = [
        f"{boxes.get(int(p.mailbox_id), p.mailbox_id)} / {p.folder}" for p in places.itertuples()
    ]
    acts = messages.message_activities(store, mid, viewer=viewer)
    linked = [
        f"{a.customer_id} ({a.match_kind or 'primary'})"
        for a in acts.itertuples()
        if a.unlinked_at is None or pd.isna(a.unlinked_at)
    ]
    unlinked = [
        a.customer_id
        for a in acts.itertuples()
        if a.unlinked_at is not None and not pd.isna(a.unlinked_at)
    ]
    first = syncstore.first_stored(store, mid)
    since = (
        f"since run {first[0]} ({_when(first[1])})"
        if first
        else f"since {_when(msg.get('first_seen_at'))} (recorded when it was sent)"
    )
    text = (
        f"In the CRM: the message {mid} {_quote(msg.get('subject'))} from"
        f" {msg.get('from_addr') or '?'} dated {_when(msg.get('sent_at')) or 'unknown'} is stored"
        f" {since}, seen in {', '.join(where) or 'no mailbox you may see'},"
        f" as an activity of {', '.join(linked) or 'no customer you may see'}."
    )
    if unlinked:
        changes = messages.link_changes(store, mid)
        by = {r.customer_id: r.by_user_id for r in changes.itertuples() if r.action == "unlink"}
        text += (
            " Unlinked from " + ", ".join(f"{c} by {by.get(c, '?')}" for c in unlinked) + " (S9)."
        )
    if msg.get("shown") != "everything":
        text += f" You see its {msg.get('shown')} only (P2)."
    return Finding(
        "stored",
        text,
        message_id=mid,
        subject=msg.get("subject"),
        from_addr=msg.get("from_addr"),
        date=_when(msg.get("sent_at")),
        places=where,
        customers=[str(a.customer_id) for a in acts.itertuples()],
        reason="stored_customer",
        rule="S3",
        run=first[0] if first else None,
    )


# -- the server -----------------------------------------------------------------------------
def _criteria(
    key: str | None,
    addr: str | None,
    since: datetime | None,
    until: datetime | None,
    words: list[str],
) -> list[Any]:
    crit: list[Any] = []
    if key:
        crit += ["HEADER", "Message-ID", key]
    if addr:
        crit += ["OR", "FROM", addr, "OR", "TO", addr, "CC", addr]
    if since is not None and until is not None:
        crit += ["SENTSINCE", since.date(), "SENTBEFORE", until.date()]
    for w in words:
        crit += ["SUBJECT", w]
    return crit or ["ALL"]


def _server(
    store: Store,
    settings: Settings,
    viewer: Viewer,
    key: str | None,
    addr: str | None,
    since: datetime | None,
    until: datetime | None,
    words: list[str],
    seen: set[tuple[int, str, int, int]],
) -> list[Finding]:
    from mailops import imap
    from mailops.folders import plan_folders
    from mailops.imap import commands
    from mailops.match import Directory
    from mailops.parse import parse_headers_fast
    from mailops.sync import FETCH_HEADERS, window_start

    directory = Directory.load(store)
    out: list[Finding] = []
    for mb in mailboxes.all_mailboxes(store, states=("connected", "problematic")):
        if not viewer.sees_user(mb.owner_user_id):
            continue
        checkpoints = syncstore.checkpoints(store, mb.id)
        window = window_start(settings, mb)
        client = imap.login(mb, settings)
        try:
            listing = commands.list_folders(client)
            chosen, skipped = plan_folders(listing, mb.folders)
            not_synced = {f.name: why for f, why in skipped}
            for folder in [*chosen, *(f for f, _ in skipped)]:
                status = commands.select(client, folder.name, readonly=True)
                uidvalidity = int(status.get(b"UIDVALIDITY", 0) or 0)
                uids = commands.search(client, _criteria(key, addr, since, until, words))
                if not uids:
                    continue
                fetched = commands.fetch(client, uids[:50], FETCH_HEADERS)
                for uid, data in fetched.items():
                    if (mb.id, folder.name, uidvalidity, int(uid)) in seen:
                        continue
                    place = syncstore.ledger_place(store, mb.id, folder.name, uidvalidity, int(uid))
                    headers = parse_headers_fast(commands.header_block(data))
                    if place is not None:
                        continue  # the ledger explains it (found above when it matched)
                    arrived = data.get(b"INTERNALDATE")
                    arrived = (
                        arrived.replace(tzinfo=None) if isinstance(arrived, datetime) else None
                    )
                    flags = {
                        f.decode() if isinstance(f, bytes) else str(f)
                        for f in data.get(b"FLAGS") or ()
                    }
                    why = _not_examined(
                        folder.name, not_synced.get(folder.name), flags, arrived, window,
                        checkpoints.get(folder.name), uidvalidity, int(uid), headers, directory,
                    )  # fmt: skip
                    out.append(
                        Finding(
                            "not_examined",
                            f"Not in the CRM: on the server, {mb.address} / {folder.name} holds"
                            f" {headers.message_id or '(no Message-ID)'} {_quote(headers.subject)} from"
                            f" {headers.from_addr or '?'} dated {_when(headers.date) or 'unknown'},"
                            f" which the sync never examined: {why}.",
                            message_id=headers.message_id,
                            subject=headers.subject,
                            from_addr=headers.from_addr,
                            date=_when(headers.date),
                            places=[f"{mb.address} / {folder.name}"],
                            reason=why.split(" (")[0],
                        )
                    )
                commands.unselect(client)
        finally:
            imap.close_imap(client)
    return out


def _not_examined(
    folder: str,
    skipped_because: str | None,
    flags: set[str],
    arrived: datetime | None,
    window: datetime,
    checkpoint: Any,
    uidvalidity: int,
    uid: int,
    headers: Any,
    directory: Any,
) -> str:
    if skipped_because == "special_use":
        return f"folder not synced ({folder} is Drafts, Junk or Trash, S6)"
    if skipped_because == "not_selected":
        return f"folder not synced ({folder} is not among the folders its owner chose, S9)"
    if skipped_because == "gmail_labels":
        return f"folder not synced ({folder} is a Gmail label; All Mail is synced instead)"
    if any(directory.is_erased(a) for a in headers.participants):
        return "erased (a person on it was erased on request, G1)"
    if arrived is not None and arrived < window:
        return (
            f"before the window (arrived {_when(arrived)}; the window starts {_when(window)}, S2)"
        )
    if checkpoint is None or checkpoint.uidvalidity != uidvalidity:
        return "folder not synced yet (no checkpoint for it; the next sync examines it)"
    if uid > checkpoint.last_uid:
        return "arrived after the last sync (the next sync examines it)"
    return "not examined for an unknown reason (a resync of the folder re-examines it)"


def findings_json(findings: list[Finding]) -> str:
    return json.dumps([asdict(f) for f in findings], ensure_ascii=False, default=str)


def findings_frame(findings: list[Finding]) -> pd.DataFrame:
    cols = [f.name for f in fields(Finding)]
    return pd.DataFrame([asdict(f) for f in findings], columns=cols)
