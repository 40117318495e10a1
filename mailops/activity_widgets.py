"""The panel of ``notebooks/customer_activity.ipynb`` (A1, N1, F1): ipywidgets only.

Pick a customer -> his timeline (newest first; unread notifications first, above it) ->
open a message (sanitized HTML, remote content blocked) -> **Reply** opens the compose
form as a reply to it, **Follow up** drafts a follow-up (F1: logged as a suggestion) and
opens it in the compose form, where Send sends that very draft (so its outcome is
measured). Every button calls the same functions as the CLI and opens the store only for
that action, so the notebook never holds the DuckDB file while idle.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ipywidgets as w
import pandas as pd

from mailops.compose_widgets import ComposePanel
from mailops.config import Settings
from mailops.errors import MailopsError
from mailops.store import Store

__all__ = [
    "ActivityPanel",
    "DraftComposePanel",
    "customer_choices",
    "notifications_html",
    "timeline_html",
]


@contextmanager
def _store(settings: Settings) -> Iterator[Store]:
    store = Store(settings.db)
    try:
        yield store
    finally:
        store.close()


def customer_choices(store: Any, user_id: str) -> list[tuple[str, str]]:
    """Customers the user may look at, those with the newest email first."""
    from mailops.permissions import scope_for
    from mailops.store.timeline import customers_by_recent_mail

    rows = customers_by_recent_mail(store, viewer=scope_for(store, user_id))
    return [(f"{name} ({cid})", cid) for cid, name in rows]


def timeline_html(frame: pd.DataFrame, note: str = "") -> str:
    """The timeline as an HTML table (readable without a kernel)."""
    head = f"<p><i>{html.escape(note)}</i></p>" if note else ""
    if frame.empty:
        return head + "<p>No emails with this customer yet.</p>"
    rows = []
    for r in frame.itertuples():
        when = f"{pd.Timestamp(r.at):%Y-%m-%d %H:%M}" if pd.notna(r.at) else ""
        arrow = "← in" if r.direction == "inbound" else "→ out"
        subject = ("● " if r.unread else "") + str(r.subject or "(no subject)")
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(v))}</td>"
                for v in (
                    when,
                    arrow,
                    r.deal if isinstance(r.deal, str) else "",
                    r.mailbox if isinstance(r.mailbox, str) else "",
                    subject,
                    r.preview if isinstance(r.preview, str) else "",
                    int(r.attachments) or "",
                )
            )
            + "</tr>"
        )
    header = "".join(
        f"<th>{h}</th>" for h in ("when", "", "deal", "mailbox", "subject", "preview", "📎")
    )
    return f"{head}<table><tr>{header}</tr>{''.join(rows)}</table>"


def notifications_html(frame: pd.DataFrame) -> str:
    unread = frame[frame["unread"]] if not frame.empty else frame
    if unread.empty:
        return "<p>No unread notifications.</p>"
    items = "".join(
        f"<li><b>{html.escape(str(r.customer))}</b>: {html.escape(str(r.subject or ''))}"
        f" <small>({html.escape(str(r.reason))}, {pd.Timestamp(r.created_at):%Y-%m-%d %H:%M})</small></li>"
        for r in unread.itertuples()
    )
    return f"<p><b>{len(unread)} unread notification(s)</b></p><ul>{items}</ul>"


class DraftComposePanel(ComposePanel):
    """The compose form on an existing draft (a follow-up suggestion): Save draft updates
    it, Send sends that draft -- so the suggestion's outcome (as is / edited) is measured."""

    def __init__(self, settings: Settings, user_id: str, draft_id: int) -> None:
        from mailops.store import outbox as obstore

        with _store(settings) as store:
            d = obstore.get_draft(store, draft_id)
        super().__init__(settings, user_id, customer_id=d.customer_id)
        self.draft_id = draft_id
        if d.mailbox_id is not None and d.mailbox_id in [v for _, v in self.mailbox.options]:
            self.mailbox.value = d.mailbox_id
        self.subject.value = d.subject or ""
        self.body.value = d.body_text or ""
        self.reply_to.value = d.reply_to_message_id or ""

    def on_draft(self) -> None:
        def run() -> None:
            from mailops.send import drafts

            with _store(self.settings) as store:
                drafts.edit(
                    store, self.draft_id, subject=self.subject.value, body_text=self.body.value
                )
            self._say(f"Draft {self.draft_id} saved (in the CRM only).")

        self._guard(run)

    def on_send(self) -> None:
        def run() -> None:
            from mailops.send import drafts

            with _store(self.settings) as store:
                drafts.edit(
                    store, self.draft_id, subject=self.subject.value, body_text=self.body.value
                )
                item = drafts.send_draft(store, self.settings, self.draft_id, user_id=self.user_id)
            self._say(f"Draft {self.draft_id}: {html.escape(item.state)}")

        self._guard(run)


class ActivityPanel:
    def __init__(
        self,
        settings: Settings,
        user_id: str,
        *,
        customer: str | None = None,
        sync: bool = True,
        max_age_s: float = 300.0,
        bound_s: float = 8.0,
        rows: int = 50,
    ) -> None:
        self.settings, self.user_id = settings, user_id
        self.sync, self.max_age_s, self.bound_s, self.rows = sync, max_age_s, bound_s, rows
        with _store(settings) as store:
            options = customer_choices(store, user_id)
        self.customer = w.Dropdown(options=options, description="Customer")
        if customer:
            with _store(settings) as store:
                from mailops.timeline import find_customer

                cid, _ = find_customer(store, customer)
            if cid not in [v for _, v in options]:
                self.customer.options = [*options, (cid, cid)]
            self.customer.value = cid
        self.notes = w.HTML()
        self.timeline = w.HTML()
        self.message = w.Dropdown(options=[], description="Message", layout=w.Layout(width="80%"))
        self.viewer = w.HTML()
        self.compose = w.VBox([])
        self.last = ""
        buttons = []
        for label, action in (
            ("Open", self.on_open),
            ("Reply", self.on_reply),
            ("Follow up", self.on_follow_up),
        ):
            b = w.Button(description=label)
            b.on_click(lambda _b, fn=action: fn())
            buttons.append(b)
        self.customer.observe(lambda _c: self.load(), names="value")
        self.widget = w.VBox(
            [
                self.notes,
                self.customer,
                self.timeline,
                self.message,
                w.HBox(buttons),
                self.viewer,
                self.compose,
            ]
        )
        self.load()

    def _say(self, text: str) -> None:
        self.last = text
        self.viewer.value = text

    def load(self) -> None:
        """Unread notifications first, then the chosen customer's timeline (synced first)."""
        from mailops.notifications import list_notifications
        from mailops.timeline import open_timeline

        try:
            with _store(self.settings) as store:
                self.notes.value = notifications_html(list_notifications(store, self.user_id))
                if not self.customer.value:
                    self.timeline.value = "<p>Pick a customer.</p>"
                    return
                t = open_timeline(
                    store,
                    self.settings,
                    self.user_id,
                    self.customer.value,
                    sync=self.sync,
                    max_age_s=self.max_age_s,
                    bound_s=self.bound_s,
                    limit=self.rows,
                )
                try:
                    frame = t.frame
                    self.timeline.value = timeline_html(frame, t.freshness.note())
                    self.message.options = [
                        (
                            f"{pd.Timestamp(r.at):%Y-%m-%d %H:%M} {'←' if r.direction == 'inbound' else '→'} {r.subject or '(no subject)'}",
                            r.message_id,
                        )
                        for r in frame.itertuples()
                    ]
                finally:
                    t.finish()
        except MailopsError as e:
            self.timeline.value = f"<b>{html.escape(e.one_line())}</b>"

    def on_open(self) -> None:
        from mailops.timeline import message_html, open_message

        if not self.message.value:
            return
        try:
            with _store(self.settings) as store:
                view = open_message(store, self.user_id, self.message.value, mark_read=True)
                self._say(message_html(view))
                from mailops.notifications import list_notifications

                self.notes.value = notifications_html(list_notifications(store, self.user_id))
        except MailopsError as e:
            self._say(f"<b>{html.escape(e.one_line())}</b>")

    def on_reply(self) -> None:
        from mailops.send.reply import reply_subject

        if not self.message.value:
            return
        panel = ComposePanel(self.settings, self.user_id, customer_id=self.customer.value)
        panel.reply_to.value = self.message.value
        label = dict((v, k) for k, v in self.message.options).get(self.message.value, "")
        panel.subject.value = reply_subject(label.split(" ", 3)[-1] if label else "")
        self.compose.children = [w.HTML("<hr><b>Reply</b>"), panel.widget]
        self.compose_panel: ComposePanel = panel

    def on_follow_up(self) -> None:
        """Draft a follow-up for the selected message's thread and open it in the form."""
        from mailops.followup import draft_followup, waiting_threads

        if not self.message.value:
            return
        try:
            with _store(self.settings) as store:
                waiting = waiting_threads(store, self.user_id, reply_hours=0, customer_days=0)
                from mailops.store.timeline import thread_of

                thread = thread_of(store, self.message.value)
                hit = waiting[
                    (waiting["customer_id"] == self.customer.value) & (waiting["thread"] == thread)
                ]
                if hit.empty:
                    raise MailopsError(
                        "this thread has no message to follow up", code="nothing_to_follow"
                    )
                s = draft_followup(
                    store, self.settings, next(hit.itertuples()), user_id=self.user_id
                )
            panel = DraftComposePanel(self.settings, self.user_id, s.draft_id)
            note = f" ({html.escape(s.note)})" if s.note else ""
            self.compose.children = [
                w.HTML(
                    f"<hr><b>Follow-up</b>: suggestion {s.id}, draft {s.draft_id}, {s.model}{note}"
                ),
                panel.widget,
            ]
            self.compose_panel = panel
        except MailopsError as e:
            self._say(f"<b>{html.escape(e.one_line())}</b>")

    def show(self) -> Any:
        from IPython.display import display

        display(self.widget)
        return None
