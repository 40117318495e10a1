"""Sending against the real devserver (E1-E3): each E1 refusal, kinds of email, delivery."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import pytest
from send_support import Party, add_deal, add_user, make_party

from mailops.errors import SendRefused
from mailops.permissions import SYSTEM
from mailops.send import Attachment, EmailRequest, prepare, send_email
from mailops.store import mailboxes as mbstore
from mailops.store import outbox as obstore
from mailops.store.messages import customer_activities

pytestmark = pytest.mark.server


@pytest.fixture
def party(store, settings, mailserver, password_mailbox) -> Party:
    p = make_party(store, settings, mailserver, password_mailbox)
    p.customer("c-1", "Carla Buyer")
    return p


def req(p: Party, **kw) -> EmailRequest:
    values = dict(
        user_id=p.user_id,
        mailbox=p.mailbox.address,
        customer_id="c-1",
        subject="Your new flat",
        body_text="Hello Carla,\n\nthe keys are ready.\n",
    )
    values.update(kw)
    return EmailRequest(**values)


def refused(p: Party, code: str, **kw) -> SendRefused:
    with pytest.raises(SendRefused) as info:
        send_email(p.store, p.settings, req(p, **kw))
    assert info.value.code == code, info.value
    assert p.store.scalar("SELECT count(*) FROM outbox") == 0  # nothing queued
    return info.value


# -- E1 -------------------------------------------------------------------------------------
def test_E1_problematic_mailbox_refused(party: Party) -> None:
    mbstore.set_state(party.store, party.mailbox.id, "problematic", code="auth_failed", message="x")
    err = refused(party, "mailbox_problematic")
    assert "reconnect" in err.one_line()
    assert party.inbox("c-1") == []


def test_E1_disconnected_mailbox_refused(party: Party) -> None:
    mbstore.set_state(party.store, party.mailbox.id, "disconnected")
    refused(party, "mailbox_not_connected")


def test_E1_mailbox_of_another_user_refused(party: Party) -> None:
    add_user(party.store, "user-2", "other@example.test", "Olga Other")
    refused(party, "mailbox_not_owned", user_id="user-2")


def test_E1_user_without_send_permission_refused(party: Party) -> None:
    party.store.execute("UPDATE users SET can_send = FALSE WHERE id = ?", [party.user_id])
    err = refused(party, "no_send_permission")
    assert "permission" in err.message


def test_E1_customer_without_email_refused(party: Party) -> None:
    party.customer("c-2", "Nomail Nick", with_email=False)
    err = refused(party, "customer_no_email", customer_id="c-2")
    assert "Nomail Nick" in err.message


def test_E1_co_customer_without_email_refused(party: Party) -> None:
    party.customer("c-2", "Nomail Nick", with_email=False)
    refused(party, "customer_no_email", cc_customers=["c-2"])


@pytest.mark.parametrize("subject", ["", "   ", None])
def test_E1_subject_missing_refused(party: Party, subject: str | None) -> None:
    refused(party, "subject_missing", subject=subject)


@pytest.mark.parametrize(
    "body",
    [
        {"body_text": ""},
        {"body_text": " \n\t"},
        {"body_text": None, "body_html": "<p> </p><script>x</script>"},
    ],
)
def test_E1_body_empty_refused(party: Party, body: dict) -> None:
    refused(party, "body_empty", **body)


@pytest.mark.parametrize(
    "field", [{"subject": "Offer\r\nBcc: victim@example.test"}, {"subject": "Offer\nX: y"}]
)
def test_E2_header_crlf_refused(party: Party, field: dict) -> None:
    refused(party, "header_crlf", **field)


def test_E2_crlf_in_customer_name_refused(party: Party) -> None:
    party.store.execute(
        "UPDATE customers SET name = 'Evil\r\nBcc: x@example.test' WHERE id = 'c-1'"
    )
    refused(party, "header_crlf")


# -- E2 kinds ---------------------------------------------------------------------------------
def test_E2_plain_email_arrives_in_customer_inbox(party: Party) -> None:
    item = send_email(party.store, party.settings, req(party))
    assert item.state == "sent", item.last_error
    inbox = party.inbox("c-1")
    assert len(inbox) == 1
    msg = inbox[0]
    assert msg["Subject"] == "Your new flat"
    assert msg["Message-ID"] == item.message_id_header
    assert msg["Message-ID"].endswith("@example.test>")  # made in the mailbox's domain
    assert msg["From"].addresses[0].addr_spec == party.mailbox.address
    assert msg["From"].addresses[0].display_name == "Sam Seller"
    assert msg["To"].addresses[0].display_name == "Carla Buyer"
    assert msg["Date"] is not None
    assert msg.get_body(("plain",)).get_content().startswith("Hello Carla")
    assert not msg.is_multipart()


def test_E2_html_email_sanitized_with_text_alternative(party: Party) -> None:
    html = (
        '<h1>Offer</h1><p onclick="steal()">Unit <b>A-12</b> is yours.</p>'
        '<script>alert(1)</script><img src="https://tracker.example/x.gif">'
    )
    item = send_email(party.store, party.settings, req(party, body_text=None, body_html=html))
    assert item.state == "sent", item.last_error
    (msg,) = party.inbox("c-1")
    assert msg.get_content_type() == "multipart/alternative"
    sent_html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert "<b>A-12</b>" in sent_html
    assert "script" not in sent_html and "onclick" not in sent_html
    assert "Unit A-12 is yours." in text and "<" not in text and "*" not in text


def test_E2_attachments_arrive_with_detected_type(party: Party, tmp_path) -> None:
    pdf = tmp_path / "floor plan.pdf"
    pdf.write_bytes(b"%PDF-1.4 fake plan")
    data = Attachment.from_bytes("prices.csv", b"unit,price\nA-12,450000\n")
    item = send_email(party.store, party.settings, req(party, attachments=[pdf, data]))
    assert item.state == "sent", item.last_error
    (msg,) = party.inbox("c-1")
    atts = {a.get_filename(): a for a in msg.iter_attachments()}
    assert set(atts) == {"floor plan.pdf", "prices.csv"}
    assert atts["floor plan.pdf"].get_content_type() == "application/pdf"
    assert atts["floor plan.pdf"].get_content() == b"%PDF-1.4 fake plan"
    assert atts["prices.csv"].get_content_type() == "text/csv"
    assert msg.get_body(("plain",)).get_content().startswith("Hello Carla")


def test_E2_attachments_over_the_size_limit_refused(party: Party) -> None:
    party.settings.send_max_bytes = 1000
    big = Attachment.from_bytes("big.bin", b"x" * 2000)
    err = refused(party, "too_large", attachments=[big])
    assert "2,000 bytes" in err.message and "1,000" in err.message


def test_E2_missing_attachment_file_refused(party: Party, tmp_path) -> None:
    refused(party, "attachment_missing", attachments=[tmp_path / "nope.pdf"])


def test_E2_cc_and_bcc_co_customers(party: Party) -> None:
    party.customer("c-2", "Carl Cobuyer")
    party.customer("c-3", "Bea Blind")
    add_deal(party.store, "d-1", ["c-1", "c-2"], unit="A-12", project="Harbour View")
    item = send_email(
        party.store, party.settings, req(party, cc_customers=["c-2"], bcc_customers=["c-3"])
    )
    assert item.state == "sent", item.last_error
    for cid in ("c-1", "c-2", "c-3"):
        (msg,) = party.inbox(cid)
        assert msg["Cc"].addresses[0].addr_spec == party.customers["c-2"][0]
        assert msg["Bcc"] is None  # Bcc is never in a header
    acts = party.store.query(
        "SELECT customer_id, direction, match_kind, deal_id FROM activities ORDER BY 1"
    )
    assert acts["customer_id"].tolist() == ["c-1", "c-2", "c-3"]
    assert set(acts["direction"]) == {"outbound"}
    assert acts.loc[acts.customer_id == "c-2", "deal_id"].item() == "d-1"


# -- E3 delivery ------------------------------------------------------------------------------
def test_E3_copy_in_sent_folder_and_outbound_activity_at_once(party: Party) -> None:
    item = send_email(party.store, party.settings, req(party))
    assert (item.state, item.phase, item.sent_copy, item.attempts) == (
        "sent",
        "done",
        "appended",
        1,
    )
    sent = party.sent()
    assert [m["Message-ID"] for m in sent] == [item.message_id_header]
    acts = customer_activities(party.store, "c-1", viewer=SYSTEM)
    assert len(acts) == 1
    assert acts.iloc[0]["direction"] == "outbound"
    assert acts.iloc[0]["subject"] == "Your new flat"
    # idempotent: delivering a sent entry again does nothing
    from mailops.send import deliver

    again = deliver(party.store, party.settings, item.id)
    assert again.attempts == 1
    assert len(party.inbox("c-1")) == 1 and len(party.sent()) == 1


def test_E3_smtp_rejection_fails_with_reason(party: Party) -> None:
    party.customers["c-9"] = ("nobody@nowhere.invalid", "")
    party.store.execute("INSERT INTO customers (id, name) VALUES ('c-9', 'Gone')")
    party.store.execute(
        "INSERT INTO customer_addresses (customer_id, address, is_primary, valid_from)"
        " VALUES ('c-9', 'nobody@nowhere.invalid', TRUE, '2020-01-01')"
    )
    item = send_email(party.store, party.settings, req(party, customer_id="c-9"))
    assert item.state == "failed"
    assert item.error_code == "recipient_refused"
    assert "nobody@nowhere.invalid" in (item.last_error or "")
    assert party.sent() == []
    assert party.store.scalar("SELECT count(*) FROM activities") == 0


def _inbound(
    party: Party, cid: str, subject: str, *, html: str | None = None, cc: list[str] = ()
) -> str:
    """A customer's email delivered into the user's INBOX and synced into the store."""
    from mailops.sync import sync_mailbox

    msg = EmailMessage()
    msg["From"] = f"Carla Buyer <{party.customers[cid][0]}>"
    msg["To"] = party.mailbox.address
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    mid = make_msgid(domain="Customer.Example")
    msg["Message-ID"] = mid
    msg["References"] = "<Root-1@customer.example>"
    msg.set_content("Is the balcony south facing?\nThanks, Carla\n")
    if html:
        msg.add_alternative(html, subtype="html")
    party.mailserver.deliver(party.customers[cid][0], party.mailbox.address, msg.as_bytes())
    result = sync_mailbox(party.store, party.settings, party.mailbox.id)
    assert result.status == "ok", result.one_line()
    return mid


def test_E2_reply_threads_and_quotes(party: Party) -> None:
    mid = _inbound(party, "c-1", "RE: Aw: Balcony")
    item = send_email(
        party.store,
        party.settings,
        req(party, customer_id=None, subject=None, body_text="Yes, it is.", reply_to=mid),
    )
    assert item.state == "sent", item.last_error
    (msg,) = party.inbox("c-1")
    assert msg["Subject"] == "Re: Balcony"
    assert msg["In-Reply-To"] == mid  # exactly as written (case kept)
    assert msg["References"].split() == ["<Root-1@customer.example>", mid]
    text = msg.get_body(("plain",)).get_content()
    assert text.startswith("Yes, it is.")
    assert "> Is the balcony south facing?" in text
    assert "Carla Buyer" in text  # attribution


def test_E2_reply_quotes_html_in_a_blockquote(party: Party) -> None:
    mid = _inbound(
        party, "c-1", "Parking", html="<p>Is there <b>parking</b>?</p><script>bad()</script>"
    )
    item = send_email(
        party.store,
        party.settings,
        req(party, customer_id=None, subject=None, body_text="Two spaces.", reply_to=mid),
    )
    (msg,) = party.inbox("c-1")
    html = msg.get_body(("html",)).get_content()
    assert "<blockquote>" in html and "<b>parking</b>" in html and "bad()" not in html
    assert html.index("Two spaces.") < html.index("<blockquote>")
    assert item.state == "sent"
    assert "> Is the balcony south facing?" in msg.get_body(("plain",)).get_content()


def test_E2_reply_all_limited_to_customers_and_user(party: Party) -> None:
    party.customer("c-2", "Carl Cobuyer")
    stranger, _ = party.mailserver.new_user()
    mid = _inbound(party, "c-1", "Viewing", cc=[party.customers["c-2"][0], stranger])
    item = send_email(
        party.store,
        party.settings,
        req(
            party,
            customer_id=None,
            subject=None,
            body_text="Saturday works.",
            reply_to=mid,
            reply_all=True,
        ),
    )
    assert item.state == "sent", item.last_error
    assert sorted(item.recipients) == sorted([party.customers["c-1"][0], party.customers["c-2"][0]])
    assert stranger not in item.recipients
    (msg,) = party.inbox("c-2")
    assert msg["Subject"] == "Re: Viewing"


def test_E2_reply_to_unknown_message_refused(party: Party) -> None:
    refused(party, "reply_unknown_message", reply_to="<nope@example.test>")


def test_E3_sent_message_stored_once_after_next_sync(party: Party) -> None:
    from mailops.sync import sync_mailbox

    item = send_email(party.store, party.settings, req(party))
    key = item.message_id_header.strip("<>").lower()
    assert party.store.scalar("SELECT count(*) FROM messages") == 1
    assert party.store.scalar("SELECT count(*) FROM message_places") == 0
    result = sync_mailbox(party.store, party.settings, party.mailbox.id)
    assert result.status == "ok", result.one_line()
    assert party.store.scalar("SELECT count(*) FROM messages") == 1
    assert party.store.scalar("SELECT id FROM messages") == key
    places = party.store.query("SELECT folder FROM message_places WHERE message_id = ?", [key])
    assert places["folder"].tolist() == ["Sent"]  # the sync linked the same message
    acts = party.store.query("SELECT customer_id, direction FROM activities")
    assert acts.values.tolist() == [["c-1", "outbound"]]


def test_E2_preview_builds_without_sending(party: Party) -> None:
    from mailops.send import preview

    p = prepare(party.store, party.settings, req(party))
    view = preview(p)
    assert view["subject"] == "Your new flat" and view["message_id"] == p.message_id
    assert party.store.scalar("SELECT count(*) FROM outbox") == 0
    assert party.inbox("c-1") == []
    assert obstore.outbox_frame(party.store, viewer=SYSTEM).empty


def test_demo_send_step_sends_offer_reply_note_once(party: Party) -> None:
    from mailops.dev.demo.send import run_demo

    party.settings.devserver_dir = str(party.mailserver.root)
    party.customer("c-2", "Carl Cobuyer")
    add_deal(
        party.store,
        "d-1",
        ["c-1", "c-2"],
        unit="A-12",
        project="Harbour View",
        price=450000,
        currency="EUR",
    )
    _inbound(party, "c-1", "Question about A-12")
    lines: list[str] = []
    items = run_demo(party.store, party.settings, lines.append)
    assert [i.state for i in items] == ["sent", "sent", "sent"], lines
    subjects = [i.subject for i in items]
    assert subjects[0] == "Your offer for unit A-12 at Harbour View"
    assert subjects[1] == "Re: Question about A-12"
    assert any("outbound" in line and "Re: Question about A-12" in line for line in lines)
    assert len(party.inbox("c-1")) == 3
    again = run_demo(party.store, party.settings, lines.append)
    assert [i.id for i in again] == [i.id for i in items]  # re-running sends nothing new
    assert len(party.inbox("c-1")) == 3


def test_E3_send_over_xoauth2_from_an_msal_mailbox(store, settings, mailserver) -> None:
    """A Microsoft (MSAL) mailbox sends with SASL XOAUTH2; on a non-Microsoft SMTP host
    (the devserver) mailops files the Sent copy itself."""
    from connect_support import Approver, local_endpoints
    from send_support import add_customer, fetch

    from mailops.connect import connect_mailbox

    address, password = mailserver.new_user()
    approver = Approver(mailserver)
    approver.address = address
    mb = connect_mailbox(
        store,
        settings,
        user_id="user-1",
        provider="microsoft",
        address=address,
        endpoints=local_endpoints(mailserver, settings, "microsoft"),
        device_code_callback=approver,
    )
    add_user(store, "user-1", address, "Olivia Oauth")
    cust, cust_pw = mailserver.new_user()
    add_customer(store, "c-1", "Carla Buyer", cust)
    item = send_email(
        store,
        settings,
        EmailRequest(
            user_id="user-1",
            mailbox=mb.id,
            customer_id="c-1",
            subject="Via OAuth",
            body_text="Sent with XOAUTH2.",
        ),
    )
    assert mb.auth_kind == "oauth"  # no password stored: SMTP can only have used XOAUTH2
    assert (item.state, item.sent_copy) == ("sent", "appended"), item.last_error
    (msg,) = fetch(mailserver, cust, cust_pw)
    assert msg["Subject"] == "Via OAuth"
    assert [m["Message-ID"] for m in fetch(mailserver, address, password, "Sent")] == [
        item.message_id_header
    ]
