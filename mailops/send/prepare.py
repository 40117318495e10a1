"""From a send request to a complete, checked email (E1, E2): nothing here touches a server.

``prepare()`` applies the E1 preconditions in a fixed order, each refusal with its own code:

=======================  ===================================================
code                     refused when
=======================  ===================================================
mailbox_not_owned        the mailbox belongs to another user
mailbox_not_connected    the mailbox was disconnected (C3)
mailbox_problematic      the mailbox is problematic (C3/C4): reconnect first
no_send_permission       the user lacks the Activities (send) permission (P1)
unknown_customer         no such customer
customer_no_email        the customer (or a co-customer) has no primary address
subject_missing          the subject is empty
body_empty               the body (text, HTML or rendered template) is empty
header_crlf              a header field holds a line break
too_large                attachments / the whole email exceed send_max_bytes
=======================  ===================================================
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from mailops.config import Settings
from mailops.errors import MailopsError, SendRefused
from mailops.permissions import scope_for
from mailops.send import compose, reply, templates
from mailops.send.compose import Attachment, Recipient
from mailops.store import Store
from mailops.store import directory as dirstore
from mailops.store import mailboxes as mbstore
from mailops.store import outbox as obstore
from mailops.store.mailboxes import Mailbox

__all__ = ["EmailRequest", "Prepared", "check_sender", "prepare"]


@dataclass
class EmailRequest:
    """What a sales person asks to send. Exactly one body source: text, HTML or template."""

    user_id: str
    mailbox: str | int  # address or id of one of the user's mailboxes
    customer_id: str | None = None  # None only for a reply (taken from the original)
    subject: str | None = None
    body_text: str | None = None
    body_html: str | None = None
    template: str | int | None = None
    deal_id: str | None = None
    cc_customers: Sequence[str] = ()
    bcc_customers: Sequence[str] = ()
    attachments: Sequence[str | Path | Attachment] = ()
    #: images the HTML body shows as ``<img src="cid:NAME">`` (NAME: the file name)
    inline_images: Sequence[str | Path | Attachment] = ()
    reply_to: str | None = None  # stored message id / Message-ID
    reply_all: bool = False
    draft_id: int | None = None


@dataclass
class Prepared:
    """A checked email ready for the outbox; ``message`` already carries its Message-ID."""

    request: EmailRequest
    mailbox: Mailbox
    message: EmailMessage
    recipients: list[Recipient]  # To + Cc + Bcc (the SMTP envelope)
    customer_ids: list[str]  # every customer addressed
    bcc: list[Recipient] = field(default_factory=list)
    deal_id: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    @property
    def raw(self) -> bytes:
        return self.message.as_bytes()

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])


def _may_send(store: Store, user_id: str) -> bool:
    from mailops.permissions import can_send

    return can_send(store, user_id)


def check_sender(store: Store, user_id: str, mailbox_ref: str | int) -> Mailbox:
    """E1 for the sender: own, connected, not problematic mailbox; send permission."""
    try:
        mb = mbstore.find(store, mailbox_ref, include_disconnected=True)
    except MailopsError:
        raise SendRefused(f"no mailbox {mailbox_ref!r}", code="mailbox_not_found") from None
    if mb.owner_user_id != user_id:
        raise SendRefused(
            f"mailbox {mb.address} belongs to another user; send from your own mailbox",
            code="mailbox_not_owned",
        )
    if mb.state == "problematic":
        raise SendRefused(
            f"mailbox {mb.address} is problematic ({mb.problem_code or 'unknown'}): nothing sent",
            code="mailbox_problematic",
            guidance="reconnect the mailbox (mailops mailbox reconnect), then send again",
        )
    if mb.state != "connected":
        raise SendRefused(
            f"mailbox {mb.address} is not connected ({mb.state}): nothing sent",
            code="mailbox_not_connected",
            guidance="connect the mailbox first",
        )
    if not _may_send(store, user_id):
        raise SendRefused(
            f"user {user_id} may not send email (no Activities permission)",
            code="no_send_permission",
            guidance="ask an admin for the Activities permission",
        )
    return mb


def _customer_recipient(store: Store, customer_id: str) -> Recipient:
    cust = dirstore.get_customer(store, customer_id)
    if cust is None:
        raise SendRefused(f"no customer {customer_id!r}", code="unknown_customer")
    address = cust.get("primary_address")
    if not isinstance(address, str) or not address:
        raise SendRefused(
            f"customer {customer_id} ({cust.get('name') or 'no name'}) has no email address",
            code="customer_no_email",
            guidance="add a primary email address in the CRM",
        )
    name = cust.get("name")
    return Recipient(address, name if isinstance(name, str) else None, customer_id)


def _is_blank_html(html: str | None) -> bool:
    if html is None:
        return True
    text = re.sub(r"<[^>]*>|&nbsp;", " ", compose.sanitize_html(html))
    return not text.strip() and "<img" not in html.lower()


def prepare(store: Store, settings: Settings, req: EmailRequest) -> Prepared:
    """Check every precondition and build the email; raise SendRefused on the first failure."""
    mb = check_sender(store, req.user_id, req.mailbox)
    original = (
        reply.load_original(store, req.reply_to, viewer=scope_for(store, req.user_id))
        if req.reply_to
        else None
    )

    customer_id = req.customer_id
    cc_ids = list(dict.fromkeys(req.cc_customers))
    if original is not None:
        people = [a for a in [original.from_addr, *original.to_addrs, *original.cc_addrs] if a]
        addressed = [
            c for a in people if a != mb.address for c in dirstore.customers_by_primary(store, a)
        ]
        addressed = list(dict.fromkeys(addressed))
        if customer_id is None:
            if not addressed:
                raise SendRefused(
                    f"the message {original.key} has no customer to reply to",
                    code="customer_no_email",
                )
            customer_id = addressed[0]
        if req.reply_all:  # E2: reply-all only to customers (and the user)
            cc_ids += [c for c in addressed if c != customer_id]
    if customer_id is None:
        raise SendRefused("name the customer to write to", code="unknown_customer")

    to = _customer_recipient(store, customer_id)
    cc_ids = [c for c in dict.fromkeys(cc_ids) if c != customer_id]
    cc = [_customer_recipient(store, c) for c in cc_ids]
    bcc_ids = [c for c in dict.fromkeys(req.bcc_customers) if c != customer_id and c not in cc_ids]
    bcc = [_customer_recipient(store, c) for c in bcc_ids]
    if original is not None and req.reply_all:
        user = dirstore.find_user(store, req.user_id)
        seen = {a for a in [original.from_addr, *original.to_addrs, *original.cc_addrs] if a}
        if user and user.email and user.email != mb.address and user.email in seen:
            cc.append(Recipient(user.email, user.name))

    subject, body_text, body_html = req.subject, req.body_text, req.body_html
    if req.template is not None:
        tpl = obstore.get_template(store, req.template)
        rendered = templates.render_template(
            store,
            tpl,
            customer_id=customer_id,
            user_id=req.user_id,
            deal_id=req.deal_id,
            mailbox_address=mb.address,
            settings=settings,
        )
        subject = subject or rendered.subject
        body_text = rendered.body_text if body_text is None else body_text
        body_html = rendered.body_html if body_html is None else body_html
    if original is not None and not (subject or "").strip():
        subject = reply.reply_subject(original.subject)
    subject = compose.check_header("subject", subject or "") or ""
    subject = subject.strip()
    if not subject:
        raise SendRefused("the subject is missing", code="subject_missing")
    if not (body_text or "").strip() and _is_blank_html(body_html):
        raise SendRefused("the body is empty", code="body_empty")

    in_reply_to: str | None = None
    references: list[str] = []
    if original is not None:
        in_reply_to, references = reply.thread_headers(original)
        if body_html is None and not original.body_html:
            body_text = (body_text or "").rstrip("\n") + "\n\n" + reply.quote_text(original)
        else:
            own_html = body_html if body_html is not None else compose.text_to_html(body_text or "")
            own_text = body_text if body_text is not None else compose.html_to_text(own_html)
            body_html = own_html + reply.quote_html(original)
            body_text = own_text.rstrip("\n") + "\n\n" + reply.quote_text(original)

    user = dirstore.find_user(store, req.user_id)
    sender = Recipient(mb.address, user.name if user else None)
    msg = compose.build_message(
        sender=sender,
        to=[to],
        cc=cc,
        bcc=bcc,
        subject=subject,
        body_text=body_text,
        body_html=body_html,
        attachments=compose.load_attachments(req.attachments),
        inline_images=compose.load_attachments(req.inline_images),
        message_id=compose.new_message_id(mb.address),
        in_reply_to=in_reply_to,
        references=references,
        date=datetime.now(UTC),
        max_bytes=settings.send_max_bytes,
    )
    customers = [customer_id, *cc_ids, *bcc_ids]
    return Prepared(
        request=req,
        mailbox=mb,
        message=msg,
        recipients=[to, *cc, *bcc],
        bcc=bcc,
        customer_ids=customers,
        deal_id=req.deal_id,
    )


def preview(prepared: Prepared) -> dict[str, Any]:
    """What would be sent, for a person to check."""
    msg = prepared.message
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    return {
        "from": str(msg["From"]),
        "to": str(msg["To"]),
        "cc": str(msg["Cc"] or ""),
        "bcc": str(msg["Bcc"] or ""),  # in the Sent copy only, never on the wire
        "subject": str(msg["Subject"]),
        "message_id": prepared.message_id,
        "in_reply_to": str(msg["In-Reply-To"] or ""),
        "text": text.get_content() if text is not None else "",  # type: ignore[attr-defined]
        "html": html.get_content() if html is not None else None,  # type: ignore[attr-defined]
        "attachments": [
            (p.get_filename(), p.get_content_type(), len(p.get_payload(decode=True) or b""))
            for p in msg.iter_attachments()
        ],
        "size": len(prepared.raw),
    }
