"""Helpers for the A1/N1/S1/F1 tests: a small sales team on the devserver."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from send_support import add_customer, add_deal, add_user

from mailops.store import Store


@dataclass
class Team:
    """u-anna (sales, mailbox), u-bob (sales, deal owner), u-it (IT); customer c-1 of
    Anna's with deal d-1 owned by Bob; c-2 of Bob's."""

    store: Store
    settings: Any
    mailserver: Any
    mailbox: Any
    password: str
    customers: dict[str, tuple[str, str]] = field(default_factory=dict)

    def address(self, cid: str) -> str:
        return self.customers[cid][0]

    def customer(self, cid: str, name: str, owner: str) -> str:
        address, pw = self.mailserver.new_user()
        add_customer(self.store, cid, name, address, owner=owner)
        self.customers[cid] = (address, pw)
        return address

    def deliver(self, cid: str, subject: str, body: str = "Hello, any news?", **kw: Any) -> str:
        """The customer writes to Anna through the devserver's SMTP (a real delivery)."""
        address, pw = self.customers[cid]
        msg = message(address, self.mailbox.address, subject, body, **kw)
        smtp_send(self.mailserver, address, pw, msg)
        return str(msg["Message-ID"])


def message(
    frm: str,
    to: str,
    subject: str,
    body: str,
    *,
    html: str | None = None,
    attachments: tuple[tuple[str, bytes], ...] = (),
    date: datetime | None = None,
    in_reply_to: str | None = None,
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = frm, to, subject
    msg["Message-ID"] = make_msgid(domain="cust.test")
    if date is not None:
        from datetime import UTC

        msg["Date"] = format_datetime(date.replace(tzinfo=UTC))
    else:
        msg["Date"] = format_datetime(datetime.now().astimezone())
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for name, content in attachments:
        msg.add_attachment(content, maintype="application", subtype="octet-stream", filename=name)
    return msg


def smtp_send(mailserver: Any, user: str, password: str, msg: EmailMessage) -> None:
    ctx = ssl.create_default_context(cafile=mailserver.ca_file)
    with smtplib.SMTP("127.0.0.1", mailserver.smtp_port, timeout=30) as s:
        s.starttls(context=ctx)
        s.login(user, password)
        s.send_message(msg)


def make_team(store: Store, settings: Any, mailserver: Any, password_mailbox: Any) -> Team:
    mb, pw = password_mailbox(owner="u-anna")
    add_user(store, "u-anna", mb.address, "Anna Lindqvist")
    add_user(store, "u-bob", "bob@northwind.test", "Bob Baker")
    add_user(store, "u-it", "it@northwind.test", "Ines IT", role="it", can_send=False)
    team = Team(store, settings, mailserver, mb, pw)
    team.customer("c-1", "Carla Buyer", "u-anna")
    team.customer("c-2", "Dora Other", "u-bob")
    add_deal(store, "d-1", ["c-1"], project="Harbour View", unit="B-204", owner_user_id="u-bob")
    return team
