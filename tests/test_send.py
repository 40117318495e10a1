"""Sending against the real devserver (E1-E3): each E1 refusal, kinds of email, delivery."""

from __future__ import annotations

import pytest

from mailops.errors import SendRefused
from mailops.send import EmailRequest, send_email
from mailops.store import mailboxes as mbstore
from mailops.store import outbox as obstore
from send_support import Party, make_party

pytestmark = pytest.mark.server


@pytest.fixture
def party(store, settings, mailserver, password_mailbox) -> Party:
    p = make_party(store, settings, mailserver, password_mailbox)
    p.customer("c-1", "Carla Buyer")
    return p


def req(p: Party, **kw) -> EmailRequest:
    values = dict(user_id=p.user_id, mailbox=p.mailbox.address, customer_id="c-1",
                  subject="Your new flat", body_text="Hello Carla,\n\nthe keys are ready.\n")
    values.update(kw)
    return EmailRequest(**values)


def test_E2_plain_email_arrives_in_customer_inbox(party: Party) -> None:
    item = send_email(party.store, party.settings, req(party))
    assert item.state == "sent", item.last_error
    inbox = party.inbox("c-1")
    assert len(inbox) == 1
    msg = inbox[0]
    assert msg["Subject"] == "Your new flat"
    assert msg["Message-ID"] == item.message_id_header
    assert msg["From"].addresses[0].addr_spec == party.mailbox.address
    assert msg.get_body(("plain",)).get_content().startswith("Hello Carla")
    assert not msg.is_multipart()
