"""A1: the customer's timeline, one message, its attachments; S1's on-demand sync before it.

The CLI (``mailops activities``, ``message show``, ``attachment save``) and the notebook
``customer_activity.ipynb`` call these functions. Every read passes the viewer's P1 check
(``mailops.permissions``): a row appears only when the viewer may see that activity; bodies
and attachments only when the viewer reads bodies (IT audits metadata).

Opening a timeline first syncs the mailboxes behind it when their last sync is older than
``max_age_s`` (S1, "ad hoc when the UI implies it"). The sync runs in a thread with short
socket timeouts and no retries; the caller waits at most ``bound_s`` and then shows what is
stored, saying so, while the sync (if still running) finishes in the background. The store
is shared through the sync's gate, so reads happen between its batch transactions.
"""

from __future__ import annotations

import dataclasses
import html as htmlmod
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from mailops.config import Settings
from mailops.errors import MailopsError, PermissionDenied
from mailops.permissions import Viewer, scope_for
from mailops.safe_html import sanitize_html
from mailops.store import Store
from mailops.store import timeline as tl
from mailops.store.messages import html_for_display

__all__ = [
    "Freshness",
    "MessageView",
    "OnDemandSync",
    "Timeline",
    "block_remote_content",
    "find_customer",
    "open_message",
    "open_timeline",
    "save_attachments",
]

DEFAULT_MAX_AGE_S = 300.0  # "a few minutes"
DEFAULT_BOUND_S = 8.0


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _viewer(store: Store, who: Viewer | str | None) -> Viewer:
    return who if isinstance(who, Viewer) else scope_for(store, who)


def find_customer(store: Store, ref: str) -> tuple[str, str | None]:
    """(id, name) of the one customer REF names (id, address or name)."""
    hits = tl.customer_matches(store, ref)
    if not hits:
        raise MailopsError(
            f"no customer matches {ref!r}",
            code="unknown_customer",
            guidance="give a customer id, an email address or (part of) a name",
        )
    if len(hits) > 1:
        listed = ", ".join(f"{i} ({n})" for i, n in hits[:8])
        raise MailopsError(
            f"{ref!r} matches {len(hits)} customers: {listed}",
            code="ambiguous_customer",
            guidance="give the customer id",
        )
    return hits[0]


# -- S1: on demand ---------------------------------------------------------------------
@dataclass
class Freshness:
    """What the on-demand sync did before a timeline was shown."""

    checked: int = 0  # mailboxes behind the timeline
    synced: list[str] = field(default_factory=list)  # synced now, ok
    failed: list[tuple[str, str]] = field(default_factory=list)  # (address, code)
    busy: list[str] = field(default_factory=list)  # being synced by another process now
    still_running: bool = False
    waited_s: float = 0.0
    last_sync_at: datetime | None = None  # the oldest last sync of those not synced now

    @property
    def stale(self) -> bool:
        return self.still_running or bool(self.failed)

    def note(self) -> str:
        """One line for the user; empty when everything is fresh."""
        when = f"{self.last_sync_at:%Y-%m-%d %H:%M} UTC" if self.last_sync_at else "never"
        if self.still_running:
            return (
                f"the mail server is slow: showing stored mail (last complete sync {when});"
                " the sync goes on in the background"
            )
        if self.failed:
            who = ", ".join(f"{a} ({c})" for a, c in self.failed)
            return f"could not reach {who}: showing stored mail (last complete sync {when})"
        if self.busy:
            return (
                f"{', '.join(self.busy)} is being synced by another process right now"
                f" (`mailops sync --watch`?): showing stored mail (last complete sync {when})"
            )
        return ""


class OnDemandSync:
    """Sync MAILBOXES in a thread, sharing STORE through the sync's gate."""

    def __init__(self, store: Store, settings: Settings, mailbox_ids: list[int], bound_s: float):
        from mailops.sync import _Gate

        self.store = store
        self.gate = _Gate()
        self.mailbox_ids = mailbox_ids
        self.settings = dataclasses.replace(
            settings,
            socket_timeout=max(1.0, min(float(settings.socket_timeout), bound_s)),
            sync_retries=1,  # the scheduler retries; a person is waiting here
        )
        self.results: list[Any] = []
        self.thread = threading.Thread(target=self._run, name="sync-on-demand", daemon=True)

    def _run(self) -> None:
        from mailops.sync import sync_mailbox

        for mb_id in self.mailbox_ids:
            try:
                r = sync_mailbox(  # S14: a sync already running (the watcher) is enough
                    self.store,
                    self.settings,
                    mb_id,
                    trigger="on_demand",
                    gate=self.gate,
                    lease_wait=0.0,
                )
            except Exception as e:  # noqa: BLE001 - shown as a failed mailbox, never raised
                from mailops.sync import SyncResult

                r = SyncResult(mb_id, str(mb_id), status="failed", error_code=type(e).__name__)
            self.results.append(r)

    def start(self) -> OnDemandSync:
        self.thread.start()
        return self

    def wait(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def finish(self, timeout: float | None = None) -> None:
        """Let a sync still running end (its batches are transactions: safe to stop)."""
        self.thread.join(timeout)


def _stale_mailboxes(rows: list[tuple[int, datetime | None]], max_age_s: float) -> list[int]:
    limit = _now() - timedelta(seconds=max_age_s)
    return [i for i, last in rows if last is None or last < limit]


@dataclass
class Timeline:
    customer_id: str
    customer_name: str | None
    frame: pd.DataFrame
    freshness: Freshness
    pending: OnDemandSync | None = None

    def finish(self, timeout: float | None = None) -> None:
        if self.pending is not None:
            self.pending.finish(timeout)


def open_timeline(
    store: Store,
    settings: Settings | None,
    who: Viewer | str | None,
    customer: str,
    *,
    sync: bool = True,
    max_age_s: float = DEFAULT_MAX_AGE_S,
    bound_s: float = DEFAULT_BOUND_S,
    limit: int | None = None,
) -> Timeline:
    """CUSTOMER's emails both ways, newest first, as WHO may see them; before reading, the
    mailboxes behind it whose last sync is older than MAX_AGE_S are synced, waiting at most
    BOUND_S. Call ``finish()`` on the result before closing the store."""
    viewer = _viewer(store, who)
    cid, name = find_customer(store, customer)
    behind = tl.mailboxes_behind(store, viewer, cid)
    fresh = Freshness(checked=len(behind))
    pending: OnDemandSync | None = None
    gate: Any = None
    synced_ids: set[int] = set()
    todo = _stale_mailboxes(behind, max_age_s) if sync and settings is not None else []
    if todo:
        assert settings is not None
        t0 = time.monotonic()
        pending = OnDemandSync(store, settings, todo, bound_s).start()
        done = pending.wait(bound_s)
        fresh.waited_s = time.monotonic() - t0
        fresh.still_running = not done
        gate = pending.gate
        for r in list(pending.results):
            if r.status == "ok":
                fresh.synced.append(r.address)
                synced_ids.add(r.mailbox_id)
            elif r.status == "skipped":  # another process syncs it right now
                fresh.busy.append(r.address)
            else:
                fresh.failed.append((r.address, r.error_code or r.status))
    with gate if gate is not None else _nogate():
        others = [i for i, _ in behind if i not in synced_ids] or [-1]
        fresh.last_sync_at = tl.oldest_good_sync(store, others)
        frame = tl.timeline_frame(store, viewer, cid, limit=limit)
    return Timeline(cid, name, frame, fresh, pending)


class _nogate:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# -- one message -----------------------------------------------------------------------
def block_remote_content(html: str) -> str:
    """Sanitized HTML with nothing that loads by itself from elsewhere (tracking pixels,
    remote images, CSS ``url()``, ``<link>``, backgrounds): each becomes a placeholder
    naming the host (``mailops.safe_html``, the one sanitizer for mail). Links stay (a
    click is the user's choice) and get ``rel="noopener noreferrer"``."""
    return sanitize_html(html)


@dataclass
class MessageView:
    id: str
    headers: dict[str, str]
    text: str | None  # None: the viewer reads no bodies
    html: str | None  # sanitized, remote content blocked
    attachments: pd.DataFrame
    warnings: list[str]
    customer_ids: list[str]
    deal_id: str | None
    direction: str | None
    mailboxes: list[str]

    def attachment_ids(self) -> list[str]:
        return [f"{self.id}#{int(p)}" for p in self.attachments["part_index"]]


def _listify(v: Any) -> list[str]:
    if v is None:
        return []
    try:
        return [str(x) for x in list(v) if x is not None]
    except TypeError:
        return [str(v)]


def _message_key(store: Store, ref: str) -> str:
    from mailops.parse import normalize_message_id

    ref = ref.strip()
    if ref.startswith("sha256:"):
        return ref
    return ref if tl.message_exists(store, ref) else (normalize_message_id(ref) or ref)


def open_message(
    store: Store, who: Viewer | str | None, ref: str, *, mark_read: bool = False
) -> MessageView:
    """The stored message REF (its id or Message-ID) if WHO may see it; MARK_READ marks
    WHO's own notification of it read (N1: opening an email is reading it)."""
    viewer = _viewer(store, who)
    key = _message_key(store, ref)
    row = tl.message_row(store, viewer, key)
    if row is None:
        raise PermissionDenied(
            f"no message {ref!r} visible to {viewer.user_id}",
            guidance="take the id from `mailops activities CUSTOMER`",
        )
    to = ", ".join(_listify(row.get("to_addrs")))
    cc = ", ".join(_listify(row.get("cc_addrs")))
    frm = row.get("from_addr") or ""
    if row.get("from_name"):
        frm = f"{row['from_name']} <{frm}>"
    sent = row.get("sent_at")
    subject_ok, body_ok = bool(row.get("subject_ok")), bool(row.get("body_ok"))  # P2
    headers = {
        "From": frm,
        "To": to,
        "Cc": cc,
        "Date": "" if sent is None or pd.isna(sent) else f"{pd.Timestamp(sent):%Y-%m-%d %H:%M} UTC",
        "Subject": (row.get("subject") or "") if subject_ok else "",
        "Message-ID": row.get("message_id_header") or "",
        "Customers": ", ".join(_listify(row.get("customer_names"))),
    }
    headers = {k: v for k, v in headers.items() if v}
    text: str | None = None
    html: str | None = None
    attachments = tl.attachments_of(store, key).iloc[0:0]
    if body_ok:
        raw_html = row.get("body_html")
        if isinstance(raw_html, str) and raw_html.strip():
            html = html_for_display(store, key, raw_html)  # cid: images resolved
        body = row.get("body_text")
        if isinstance(body, str) and body.strip():
            text = body
        elif html is not None:
            from mailops.send.compose import html_to_text

            text = html_to_text(html)
        else:
            text = ""
        attachments = tl.attachments_of(store, key)
    if mark_read and viewer.reads_bodies:
        from mailops.store.notifications import mark_message_read

        mark_message_read(store, viewer.user_id, key)
    return MessageView(
        id=key,
        headers=headers,
        text=text,
        html=html,
        attachments=attachments,
        warnings=_listify(row.get("parse_warnings")),
        customer_ids=_listify(row.get("customer_ids")),
        deal_id=row.get("deal_id") if isinstance(row.get("deal_id"), str) else None,
        direction=row.get("direction"),
        mailboxes=_listify(row.get("mailboxes")),
    )


def message_html(view: MessageView) -> str:
    """One message as an HTML fragment for the notebook: headers, sanitized body."""
    head = "".join(
        f"<tr><th style='text-align:left'>{htmlmod.escape(k)}</th><td>{htmlmod.escape(v)}</td></tr>"
        for k, v in view.headers.items()
    )
    if view.text is None:
        body = "<p><i>Body hidden: this user may not read it (P1 role, P2 mailbox level).</i></p>"
    elif view.html:
        body = f"<div class='mailops-message'>{view.html}</div>"
    else:
        body = f"<pre style='white-space:pre-wrap'>{htmlmod.escape(view.text)}</pre>"
    atts = ""
    if not view.attachments.empty:
        items = "".join(
            f"<li><code>{htmlmod.escape(view.id)}#{int(r.part_index)}</code> "
            f"{htmlmod.escape(str(r.filename or '(no name)'))} ({r.content_type}, {int(r.size or 0):,} bytes"
            f"{', skipped: ' + str(r.skipped_reason) if isinstance(r.skipped_reason, str) else ''})</li>"
            for r in view.attachments.itertuples()
        )
        atts = f"<p><b>Attachments</b></p><ul>{items}</ul>"
    return f"<table>{head}</table><hr>{body}{atts}"


# -- attachments -----------------------------------------------------------------------
def _split_attachment_ref(store: Store, ref: str) -> tuple[str, int | None]:
    """``MESSAGE_ID#PART`` -> (message, part); a stored id that itself holds ``#`` (an S13
    variant, ``mid#fp16``) given bare means all of its attachments."""
    if tl.message_exists(store, ref.strip()):
        return ref.strip(), None
    msg, sep, part = ref.rpartition("#")
    if sep and part.isdigit():
        return msg, int(part)
    return ref, None


def save_attachments(
    store: Store, who: Viewer | str | None, ref: str, to_dir: str | Path = "."
) -> list[Path]:
    """Write attachment REF (``MESSAGE_ID#PART``; a bare message id = all of them) into
    TO_DIR under a safe file name (never a path from the mail; never overwriting)."""
    from mailops.filenames import safe_basename, write_new_file

    msg_ref, part = _split_attachment_ref(store, ref)
    view = open_message(store, who, msg_ref)
    if view.text is None:
        raise PermissionDenied(
            "this user may not read this email: attachments are not shown (P1 role, P2 level)"
        )
    rows = view.attachments
    if part is not None:
        rows = rows[rows["part_index"] == part]
    if rows.empty:
        raise MailopsError(
            f"no attachment {ref!r}",
            code="unknown_attachment",
            guidance="`mailops message show ID` lists them as MESSAGE_ID#PART",
        )
    out: list[Path] = []
    for r in rows.itertuples():
        if isinstance(r.skipped_reason, str) and r.skipped_reason:
            raise MailopsError(
                f"attachment {view.id}#{r.part_index} was not stored ({r.skipped_reason}, S10)",
                code="attachment_not_stored",
            )
        content = tl.attachment_content(store, view.id, int(r.part_index))
        if content is None:
            raise MailopsError(
                f"attachment {view.id}#{r.part_index} has no stored content",
                code="attachment_missing",
            )
        name = safe_basename(
            r.filename if isinstance(r.filename, str) else None,
            fallback=f"attachment-{int(r.part_index)}",
        )
        out.append(write_new_file(Path(to_dir), name, content))
    return out
