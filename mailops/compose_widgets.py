"""The compose form of ``notebooks/compose_email.ipynb`` (E2): ipywidgets only.

``ComposePanel`` offers the user's connected mailboxes, their customers, co-customers for Cc,
templates and deals, a text or HTML body, attachments, and Preview / Save draft / Send.
Every button calls the same functions as ``mailops send`` and ``mailops draft`` and opens
the store only for that action (the notebook never holds the DuckDB lock while idle).
The preview shows sanitized HTML only.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ipywidgets as w

from mailops.config import Settings
from mailops.errors import MailopsError
from mailops.send import Attachment, EmailRequest
from mailops.store import Store
from mailops.widgets import for_panel

__all__ = ["ComposePanel", "choices", "preview_request", "send_request"]


@contextmanager
def _store(settings: Settings) -> Iterator[Store]:
    store = Store(settings.db)
    try:
        yield store
    finally:
        store.close()


def choices(settings: Settings, user_id: str) -> dict[str, list[tuple[str, Any]]]:
    """Dropdown options: the user's own connected mailboxes (one sends only from his own),
    and the customers and deals the one permission check (P1) lets him see; a user who may
    not send (IT) gets no mailbox."""
    from mailops.errors import PermissionDenied
    from mailops.permissions import scope_for
    from mailops.store import directory, mailboxes, outbox

    empty: dict[str, list[tuple[str, Any]]] = {
        "mailboxes": [],
        "customers": [],
        "templates": [("(none)", None)],
        "deals": [("(none)", None)],
    }
    with _store(settings) as store:
        try:
            viewer = scope_for(store, user_id)
        except PermissionDenied:  # unknown (e.g. a young store): nothing to offer
            return empty
        own = mailboxes.connected_choices(store, viewer.user_id) if viewer.may_send else []
        customers = directory.customer_choices(store, viewer=viewer)
        templates = outbox.template_choices(store)
        deals = directory.deal_choices(store, viewer=viewer)
    return {
        "mailboxes": own,
        "customers": customers,
        "templates": [("(none)", None), *templates],
        "deals": [("(none)", None), *deals],
    }


def _deal_label(row: Any) -> str:
    parts = [str(v) for v in (row.get("project"), row.get("unit")) if _present(v)]
    name = row.get("name")
    text = " ".join(parts) or (str(name) if _present(name) else str(row["id"]))
    return f"{text} ({row['id']})"


def _present(value: Any) -> bool:
    return value is not None and str(value) not in ("", "nan", "None", "NaT", "<NA>")


def customer_deals(settings: Settings, customer_id: str | None) -> list[tuple[str, Any]]:
    """The Deal list for CUSTOMER_ID: only the deals he belongs to (S4)."""
    from mailops.store import directory as dirstore

    if not customer_id:
        return [("(none)", None)]
    with _store(settings) as store:
        ids = set(dirstore.deal_customers(store, customer_id)["deal_id"])
        deals = dirstore.deals_frame(store)
    rows = [r for r in deals.to_dict("records") if r["id"] in ids]
    return [("(none)", None), *[(_deal_label(r), r["id"]) for r in rows]]


def customer_option(settings: Settings, customer_id: str) -> tuple[str, str] | None:
    """``Name <primary address>`` of one customer (for a To the choices do not list)."""
    from mailops.store import directory as dirstore

    with _store(settings) as store:
        cust = dirstore.get_customer(store, customer_id)
    if cust is None:
        return None
    name = cust.get("name") if _present(cust.get("name")) else customer_id
    address = cust.get("primary_address")
    return f"{name} <{address if _present(address) else 'no email'}>", customer_id


def preview_request(settings: Settings, request: EmailRequest) -> dict[str, Any]:
    from mailops.send import prepare, preview

    with _store(settings) as store:
        return preview(prepare(store, settings, request))


def send_request(settings: Settings, request: EmailRequest) -> Any:
    from mailops.send import send_email

    with _store(settings) as store:
        return send_email(store, settings, request)


class ComposePanel:
    def __init__(self, settings: Settings, user_id: str, *, customer_id: str | None = None) -> None:
        self.settings = settings
        self.user_id = user_id
        opts = choices(settings, user_id)
        wide = w.Layout(width="640px")
        style = {"description_width": "80px"}
        customers = list(opts["customers"])
        if customer_id and customer_id not in [c for _, c in customers]:
            known = customer_option(settings, customer_id)  # e.g. a reply from the timeline
            if known is not None:
                customers.insert(0, known)
        self.mailbox = w.Dropdown(
            options=opts["mailboxes"], description="From", style=style, layout=wide
        )
        self.customer = w.Dropdown(
            options=customers,
            value=customer_id if customer_id in [c for _, c in customers] else None,
            description="To",
            style=style,
            layout=wide,
        )
        self._customers = customers
        self.cc = w.SelectMultiple(
            options=self._cc_options(), description="Cc", rows=4, style=style, layout=wide
        )
        self.template = w.Dropdown(
            options=opts["templates"],
            description="Template",
            style=style,
            layout=w.Layout(width="316px"),
        )
        self.deal = w.Dropdown(
            options=customer_deals(settings, self.customer.value),
            description="Deal",
            style=style,
            layout=w.Layout(width="316px"),
        )
        self.template.index = 0 if self.template.value is None else self.template.index
        self._pick_only_deal()
        self.customer.observe(lambda _c: self._customer_changed(), names="value")
        self.subject = w.Text(description="Subject", style=style, layout=wide)
        self.body = w.Textarea(
            description="Body", style=style, layout=w.Layout(width="640px", height="180px")
        )
        self.is_html = w.Checkbox(description="Body is HTML", value=False)
        self.files = w.FileUpload(description="Attach", multiple=True)
        self.reply_to = w.Text(
            description="Reply to", placeholder="Message-ID (optional)", style=style, layout=wide
        )
        self.out = w.Output()
        self.last = ""
        buttons = []
        for label, action in (
            ("Preview", self.on_preview),
            ("Save draft", self.on_draft),
            ("Send", self.on_send),
        ):
            b = w.Button(description=label, button_style="primary" if label == "Send" else "")
            b.on_click(lambda _b, fn=action: fn())
            buttons.append(b)
        self.widget = w.VBox(
            [
                self.mailbox,
                self.customer,
                self.cc,
                w.HBox([self.template, self.deal]),
                self.reply_to,
                self.subject,
                self.body,
                self.is_html,
                self.files,
                w.HBox(buttons),
                self.out,
            ]
        )

    def _cc_options(self) -> list[tuple[str, Any]]:
        """Everyone but the To customer (he is on To already)."""
        return [(label, c) for label, c in self._customers if c != self.customer.value]

    def _customer_changed(self) -> None:
        self.deal.options = customer_deals(self.settings, self.customer.value)
        self._pick_only_deal()
        kept = [c for c in self.cc.value if c != self.customer.value]
        self.cc.options = self._cc_options()
        self.cc.value = tuple(kept)

    def _pick_only_deal(self) -> None:
        real = [v for _, v in self.deal.options if v is not None]
        if len(real) == 1:
            self.deal.value = real[0]
        else:
            self.deal.index = 0  # "(none)" shown, not a blank box

    def request(self) -> EmailRequest:
        atts = []
        for f in self.files.value or ():
            content = f["content"] if isinstance(f, dict) else f.content
            name = f["name"] if isinstance(f, dict) else f.name
            atts.append(Attachment.from_bytes(name, bytes(content)))
        body = self.body.value or None
        return EmailRequest(
            user_id=self.user_id,
            mailbox=self.mailbox.value,
            customer_id=self.customer.value,
            subject=self.subject.value or None,
            body_text=None if self.is_html.value else body,
            body_html=body if self.is_html.value else None,
            template=self.template.value,
            deal_id=self.deal.value,
            cc_customers=list(self.cc.value),
            attachments=atts,
            reply_to=self.reply_to.value or None,
        )

    def _say(self, text: str) -> None:
        from IPython.display import HTML

        self.last = text  # what the user was shown (also for tests and headless use)
        self.out.outputs = ()
        self.out.append_display_data(HTML(text))

    def _guard(self, fn: Any) -> None:
        try:
            fn()
        except MailopsError as e:
            self._say(f"<b>Not sent</b>: {html.escape(for_panel(e.one_line()))}")

    def on_preview(self) -> None:
        def run() -> None:
            v = preview_request(self.settings, self.request())
            head = "".join(
                f"<tr><th>{k}</th><td>{html.escape(str(v[k]))}</td></tr>"
                for k in ("from", "to", "cc", "bcc", "subject")
                if v.get(k) and str(v[k]) != "None"  # a missing value is left out, never "None"
            )
            body = v["html"] or f"<pre>{html.escape(v['text'])}</pre>"  # html is sanitized (nh3)
            self._say(f"<table>{head}</table><hr>{body}")

        self._guard(run)

    def on_draft(self) -> None:
        def run() -> None:
            from mailops.send import drafts

            r = self.request()
            with _store(self.settings) as store:
                d = drafts.create(
                    store,
                    self.user_id,
                    mailbox=r.mailbox,
                    customer_id=r.customer_id,
                    subject=r.subject,
                    body_text=r.body_text,
                    body_html=r.body_html,
                    template=r.template,
                    deal_id=r.deal_id,
                    cc_customers=r.cc_customers,
                    attachments=r.attachments,
                    reply_to=r.reply_to,
                )
            self._say(f"Draft {d.id} saved (in the CRM only).")

        self._guard(run)

    def on_send(self) -> None:
        def run() -> None:
            item = send_request(self.settings, self.request())
            if item.state == "sent":
                self._say(
                    f"Sent: {html.escape(item.message_id_header)} to {html.escape(', '.join(item.recipients))}"
                )
            else:
                self._say(
                    f"<b>Failed</b> [{html.escape(item.error_code or '')}]: "
                    f"{html.escape(for_panel(item.last_error or ''))} - click Send again to retry"
                    " (the outbox never sends an email twice)"
                )

        self._guard(run)

    def show(self) -> Any:
        from IPython.display import display

        display(self.widget)
        return None
