"""E2/E3 outgoing mail as the best clients write it, checked on the raw bytes Dovecot holds.

Every server test sends through the devserver's real SMTP submission (aiosmtpd) which
delivers over LMTP into Dovecot, and reads the message back byte for byte over IMAP.
"""

from __future__ import annotations

import re
import shutil
import smtplib
import subprocess
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import pytest
from send_support import Party, imap_for, make_party

from mailops.send import Attachment, EmailRequest, prepare, send_email
from mailops.send.compose import (
    OUTGOING,
    Recipient,
    ascii_fallback,
    build_message,
    html_document,
    html_to_text,
    sanitize_html,
    wire_message,
)
from mailops.send.outbox import deliver, queue
from mailops.send.reply import forward_subject, reply_subject

LOGO = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)
RICH = (
    "<h2>Your offer</h2>"
    '<p style="color: #1a4d8f; font-weight: bold; position: fixed; '
    'background-image: url(https://tracker.example/p.gif)">Dear Zoë,</p>'
    '<p>the <a href="https://northwind-homes.test/offer/B-204">offer for B-204</a> is ready.  '
    '<br>Questions? <a href="mailto:anna@northwind-homes.test">anna@northwind-homes.test</a></p>'
    "<ul><li>Balcony, south</li><li>Parking <b>included</b></li></ul>"
    "<table><tr><th>Unit</th><th>Price</th></tr><tr><td>B-204</td><td>450,000.00 EUR</td></tr>"
    "</table>"
    '<p><img src="cid:logo.png" alt="Northwind Homes" width="120"></p>'
    '<p onclick="steal()">Anna</p><script>alert(1)</script>'
)
ATTACHMENT_NAME = "Grundriss Wohnung B-204 – Zoë Müller, Dachgeschoß.pdf"

pytestmark = pytest.mark.server


@pytest.fixture
def party(store, settings, mailserver, password_mailbox) -> Party:
    p = make_party(store, settings, mailserver, password_mailbox)
    p.customer("c-1", "Zoë Müller")
    p.customer("c-2", "Carl Cobuyer")
    p.customer("c-3", "Bea Blind")
    return p


def raw_messages(p: Party, address: str, password: str, folder: str = "INBOX") -> list[bytes]:
    client = imap_for(p.mailserver, address, password)
    try:
        client.select_folder(folder, readonly=True)
        uids = client.search(["ALL"])
        data = client.fetch(uids, [b"BODY.PEEK[]"]) if uids else {}
        return [bytes(data[u][b"BODY[]"]) for u in sorted(data)]
    finally:
        client.logout()


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def _delivered_part(raw: bytes) -> bytes:
    """The message as mailops wrote it: Dovecot's LMTP prepends Return-Path, Delivered-To
    and Received; drop those trace fields."""
    lines = raw.split(b"\r\n")
    out, dropping = [], False
    for i, line in enumerate(lines):
        if line == b"":
            out += lines[i:]
            break
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                out.append(line)
            continue
        name = line.split(b":", 1)[0].lower()
        dropping = name in (b"return-path", b"delivered-to", b"received")
        if not dropping:
            out.append(line)
    return b"\r\n".join(out)


def send_rich(p: Party, **extra: Any) -> Any:
    fields: dict[str, Any] = {
        "body_html": RICH,
        "inline_images": [Attachment.from_bytes("logo.png", LOGO)],
        **extra,
    }
    request = EmailRequest(
        user_id=p.user_id,
        mailbox=p.mailbox.address,
        customer_id="c-1",
        cc_customers=["c-2"],
        bcc_customers=["c-3"],
        subject="Angebot für B-204 – Ihre Wohnung",
        attachments=[Attachment.from_bytes(ATTACHMENT_NAME, b"%PDF-1.4\n" + bytes(range(256)))],
        **fields,
    )
    item = send_email(p.store, p.settings, request)
    assert item.state == "sent", item.last_error
    return item


def test_E2_rich_mail_raw_bytes_as_the_best_clients_write_them(party: Party) -> None:
    send_rich(party)
    address, pw = party.customers["c-1"]
    (raw,) = raw_messages(party, address, pw)
    mine = _delivered_part(raw)

    # 7-bit safe: no relay must downgrade it (RFC 6152), a DKIM signature survives
    assert mine.isascii()
    long = [line for line in mine.split(b"\r\n") if len(line) > 78]
    assert not long, long
    # one MIME-Version, at the top
    assert mine.count(b"MIME-Version:") == 1 and b"MIME-Version: 1.0" in header_block(mine)
    # Bcc never on the wire
    assert b"Bcc" not in mine and party.customers["c-3"][0].encode() not in mine

    msg = message_from_bytes(raw, _class=EmailMessage, policy=policy.default)
    assert msg["Subject"] == "Angebot für B-204 – Ihre Wohnung"
    tree = [p.get_content_type() for p in msg.walk()]
    assert tree == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "multipart/related",
        "text/html",
        "image/png",
        "application/pdf",
    ], tree

    # the plain-text alternative is plain prose, not Markdown
    text = msg.get_body(("plain",)).get_content()
    assert "offer for B-204 <https://northwind-homes.test/offer/B-204> is ready." in text
    assert "is ready.\nQuestions? anna@northwind-homes.test\n" in text.replace("\r\n", "\n")
    assert "• Balcony, south" in text and "Parking included" in text
    assert re.search(r"B-204 +450,000\.00 EUR", text)
    for markdown in ("**", "##", "|", "](", "  \n", "  \r\n"):
        assert markdown not in text, (markdown, text)
    assert all(line == line.rstrip() for line in text.splitlines())

    # the HTML is a full document with its charset; safe inline styles kept, the rest not
    html = msg.get_body(("html",)).get_content()
    assert html.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in html
    assert "<html>" in html and "<body" in html and html.rstrip().endswith("</html>")
    assert "color:#1a4d8f" in html.replace(" ", "") and "font-weight:bold" in html.replace(" ", "")
    for bad in ("position", "url(", "tracker.example", "onclick", "<script", "alert(1)"):
        assert bad not in html, bad

    # the cid: logo travels inline, in multipart/related, under the Content-ID the HTML names
    (img,) = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert 'src="cid:logo.png"' in html
    assert img["Content-ID"] == "<logo.png>"
    assert img.get_content_disposition() == "inline"
    assert img.get_payload(decode=True) == LOGO

    # attachment names: RFC 2231 UTF-8 on both headers, each with an ASCII fallback
    (pdf,) = [p for p in msg.walk() if p.get_content_type() == "application/pdf"]
    head = pdf.as_bytes().split(b"\n\n", 1)[0]
    block = re.sub(rb"\r?\n[ \t]+", b" ", head)
    fallback = ascii_fallback(ATTACHMENT_NAME)
    assert fallback == "Grundriss Wohnung B-204 - Zoe Muller, Dachgeschoss.pdf"
    assert re.search(rb"Content-Type: application/pdf;.*name\*0?\*=utf-8''Grundriss", block)
    assert f'name="{fallback}"'.encode() in block
    assert re.search(rb"Content-Disposition: attachment;.*filename\*0?\*=utf-8''", block)
    assert f'filename="{fallback}"'.encode() in block
    assert pdf.get_filename() == ATTACHMENT_NAME  # a modern parser reads the UTF-8 name
    assert pdf.get_payload(decode=True) == b"%PDF-1.4\n" + bytes(range(256))

    # the copy of every recipient is the same, none carries Bcc
    for cid in ("c-2", "c-3"):
        (other,) = raw_messages(party, *party.customers[cid])
        assert b"Bcc:" not in _delivered_part(other)


def test_E2_bcc_kept_in_sent_copy_only(party: Party) -> None:
    send_rich(party)
    (sent,) = raw_messages(party, party.mailbox.address, party.password, "Sent")
    msg = message_from_bytes(sent, _class=EmailMessage, policy=policy.default)
    assert [a.addr_spec for a in msg["Bcc"].addresses] == [party.customers["c-3"][0]]
    assert msg["Bcc"].addresses[0].display_name == "Bea Blind"
    # ... and what the SMTP server received (the wire) had none
    wire = [
        d for _, rcpts, d in party.mailserver.smtp_messages if party.customers["c-3"][0] in rcpts
    ]
    assert wire and all(b"\r\nBcc:" not in header_block(w) for w in wire)
    # Bcc's customer still gets the outbound activity
    acts = party.store.query("SELECT customer_id FROM activities ORDER BY 1")
    assert acts["customer_id"].tolist() == ["c-1", "c-2", "c-3"]


def test_E3_8bit_body_goes_with_BODY_8BITMIME_when_offered(party: Party, monkeypatch) -> None:
    """An 8-bit body (e.g. an entry queued by an older version) is declared, never smuggled."""
    said: list[tuple[str, list[str]]] = []
    real_mail = smtplib.SMTP.mail

    def spy(self: smtplib.SMTP, sender: str, options: Any = ()) -> Any:
        if not isinstance(self, smtplib.LMTP):  # the devserver's own LMTP hop into Dovecot
            said.append((sender, list(options)))
        return real_mail(self, sender, options)

    monkeypatch.setattr(smtplib.SMTP, "mail", spy)
    prepared = prepare(
        party.store,
        party.settings,
        EmailRequest(
            user_id=party.user_id,
            mailbox=party.mailbox.address,
            customer_id="c-1",
            subject="Grüße",
            body_text="x",
        ),
    )
    eight = EmailMessage(policy=policy.SMTP)
    for key in ("From", "To", "Subject", "Date", "Message-ID"):
        eight[key] = str(prepared.message[key])
    eight.set_content("Schöne Grüße aus Köln\n", cte="8bit")
    prepared.message = eight
    assert not prepared.raw.isascii()
    item = deliver(party.store, party.settings, queue(party.store, prepared).id)
    assert item.state == "sent", item.last_error
    assert said[-1] == (party.mailbox.address, ["BODY=8BITMIME"])
    (raw,) = raw_messages(party, *party.customers["c-1"])
    assert "Schöne Grüße aus Köln".encode() in raw  # delivered intact, 8-bit

    # composed mail is 7-bit: no BODY parameter needed
    said.clear()
    send_email(
        party.store,
        party.settings,
        EmailRequest(
            user_id=party.user_id,
            mailbox=party.mailbox.address,
            customer_id="c-1",
            subject="Grüße",
            body_text="Schöne Grüße\n",
        ),
    )
    assert said[-1][1] == []


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("VS: Tarjous", "Re: Tarjous"),
        ("Ynt: Teklif", "Re: Teklif"),
        ("回复: 报价", "Re: 报价"),
        ("回复：报价", "Re: 报价"),
        ("Réf : offre", "Re: offre"),
        ("RIF: offerta", "Re: offerta"),
        ("TR: offre", "Re: offre"),
        ("AW: WG: Angebot", "Re: Angebot"),
        ("SV: Visning", "Re: Visning"),
        ("Odp: oferta", "Re: oferta"),
        ("RV: oferta", "Re: oferta"),
        ("ΑΠ: προσφορά", "Re: προσφορά"),
        ("Antw: Re[3]: bod", "Re: bod"),
        ("Information: parking", "Re: Information: parking"),
        ("Trip: viewing", "Re: Trip: viewing"),
    ],
)
def test_E2_localized_reply_and_forward_prefixes(subject: str, expected: str) -> None:
    assert reply_subject(subject) == expected


def test_E2_forward_subject() -> None:
    assert forward_subject("WG: AW: Angebot") == "Fwd: Angebot"


def test_E2_reply_to_localized_subject_through_the_server(party: Party) -> None:
    from mailops.sync import sync_mailbox

    msg = EmailMessage()
    msg["From"] = f"Zoë Müller <{party.customers['c-1'][0]}>"
    msg["To"] = party.mailbox.address
    msg["Subject"] = "回复: VS: Angebot B-204"
    msg["Date"] = format_datetime(datetime.now(UTC))
    mid = make_msgid(domain="customer.example")
    msg["Message-ID"] = mid
    msg.set_content("Ja, gerne.\n")
    party.mailserver.deliver(party.customers["c-1"][0], party.mailbox.address, msg.as_bytes())
    assert sync_mailbox(party.store, party.settings, party.mailbox.id).status == "ok"
    item = send_email(
        party.store,
        party.settings,
        EmailRequest(
            user_id=party.user_id, mailbox=party.mailbox.address, body_text="Danke!", reply_to=mid
        ),
    )
    assert item.state == "sent", item.last_error
    (raw,) = raw_messages(party, *party.customers["c-1"])
    got = message_from_bytes(raw, _class=EmailMessage, policy=policy.default)
    assert got["Subject"] == "Re: Angebot B-204"
    assert got["In-Reply-To"] == mid and got["References"] == mid


# -- pure units ---------------------------------------------------------------------------------
def test_E3_wire_message_downgrades_8bit_when_not_offered() -> None:
    eight = EmailMessage(policy=policy.SMTP)
    eight["From"], eight["To"], eight["Subject"] = "a@x.test", "b@x.test", "s"
    eight["Bcc"] = "c@x.test"
    eight.set_content("Grüße\n", cte="8bit")
    raw = eight.as_bytes()
    wire, options = wire_message(raw, offers_8bitmime=False)
    assert options == [] and wire.isascii() and b"c@x.test" not in wire
    back = message_from_bytes(wire, _class=EmailMessage, policy=policy.default)
    assert back.get_content().replace("\r\n", "\n") == "Grüße\n"
    wire, options = wire_message(raw, offers_8bitmime=True)
    assert options == ["BODY=8BITMIME"] and not wire.isascii() and b"c@x.test" not in wire


def test_E2_unknown_cid_image_shows_its_alt_text() -> None:
    msg = build_message(
        sender=Recipient("a@x.test"),
        to=[Recipient("b@x.test")],
        subject="s",
        body_html='<p>Hi <img src="cid:nothere.png" alt="[logo]"> there</p>',
    )
    html = msg.get_body(("html",)).get_content()
    assert "<img" not in html and "[logo]" in html
    assert msg.get_content_type() == "multipart/alternative"


def test_E2_inline_image_not_shown_becomes_an_attachment() -> None:
    msg = build_message(
        sender=Recipient("a@x.test"),
        to=[Recipient("b@x.test")],
        subject="s",
        body_text="see the logo",
        inline_images=[Attachment.from_bytes("logo.png", LOGO)],
    )
    assert [p.get_filename() for p in msg.iter_attachments()] == ["logo.png"]


@pytest.mark.parametrize(
    ("name", "fallback"),
    [
        ("plan.pdf", "plan.pdf"),
        ("Łódź – umowa.pdf", "Lodz - umowa.pdf"),
        ('a"b\\c.txt', "a_b_c.txt"),
        ("报价.pdf", "__.pdf"),
        ("x" * 80 + ".docx", "x" * 55 + ".docx"),
    ],
)
def test_E2_attachment_ascii_fallback(name: str, fallback: str) -> None:
    assert ascii_fallback(name) == fallback
    msg = build_message(
        sender=Recipient("a@x.test"),
        to=[Recipient("b@x.test")],
        subject="s",
        body_text="b",
        attachments=[Attachment.from_bytes(name, b"x")],
    )
    back = message_from_bytes(msg.as_bytes(), _class=EmailMessage, policy=policy.default)
    (part,) = back.iter_attachments()
    assert part.get_filename() == name
    assert part.get_param("name") == name
    assert msg.as_bytes().count(b"MIME-Version") == 1


def test_E2_plain_text_alternative_is_prose() -> None:
    text = html_to_text(
        "<h1>Title</h1><p>A <strong>bold</strong> <em>claim</em> with "
        '<a href="https://x.test/a">a link</a> and <a href="https://x.test/">https://x.test/</a>.'
        "</p><ol><li>one</li><li>two<ul><li>deep</li></ul></li></ol><blockquote><p>quoted</p>"
        "</blockquote><pre>  code\n    kept</pre>"
    )
    assert text == (
        "Title\n\nA bold claim with a link <https://x.test/a> and https://x.test/.\n\n"
        "1. one\n2. two\n  • deep\n\n> quoted\n\n  code\n    kept\n"
    )


def test_E2_sanitizer_keeps_a_safe_subset_of_styles() -> None:
    out = sanitize_html(
        '<p style="color: red; text-align: center; position: absolute; display: none; '
        'background: url(http://t.example/x); font-size: 18px">x</p>'
        '<td style="background-color: #eee; padding: 4px">y</td>'
        '<span style="color: expression(alert(1))">z</span>'
    )
    assert "color:red" in out.replace(" ", "") and "text-align:center" in out.replace(" ", "")
    assert "font-size:18px" in out.replace(" ", "")
    for bad in ("position", "display", "url(", "expression"):
        assert bad not in out


def test_E2_html_document_frame() -> None:
    doc = html_document("<p>x</p>")
    assert doc.startswith('<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">')
    assert "<p>x</p>" in doc and doc.endswith("</html>\n")
    assert OUTGOING.cte_type == "7bit"


# -- SpamAssassin (optional) ------------------------------------------------------------------
#: rules that say something about the test set-up, not about the message mailops wrote
SETUP_RULES = {
    "NO_RELAYS", "NO_RECEIVED", "ALL_TRUSTED", "TVD_SPACE_RATIO", "DKIM_ADSP_NXDOMAIN",
    "NO_DNS_FOR_FROM", "DKIM_ADSP_CUSTOM_MED", "RDNS_NONE", "SPF_NONE", "SPF_HELO_NONE",
    "T_SCC_BODY_TEXT_LINE", "KAM_DMARC_STATUS", "DMARC_MISSING", "HTML_MESSAGE",
    "MIME_HTML_MOSTLY_MULTIPART", "URIBL_BLOCKED", "RCVD_IN_DNSWL_NONE", "T_PDS_OTHER_BAD_TLD",
    "PDS_OTHER_BAD_TLD", "TVD_PH_SEC",
}  # fmt: skip


#: rules about what the sales person wrote (an offer names its price), not how mailops wrote it
CONTENT_RULES = {"LOTS_OF_MONEY"}
#: an offer letter of realistic length (a two-line test mail with a logo reads as "image only")
LETTER = "".join(
    f"<p>{para}</p>"
    for para in [
        "thank you for visiting Harbour View last Saturday. As promised, here is our offer "
        "for the flat you liked best, with the floor plan attached.",
        "The flat is on the fourth floor, faces south over the harbour and has two bedrooms, "
        "a kitchen open to the living room, a bathroom with a window and a separate toilet. "
        "The balcony runs along the living room and the main bedroom.",
        "A parking space in the underground garage and a storage room in the basement are "
        "included in the price. The building is heated by a district heating network and the "
        "flats have floor heating throughout.",
        "Construction of the second building starts in spring; your flat would be handed over "
        "in the autumn of next year. We hold the offer for you for four weeks.",
        "If you would like to see the flat again, or talk about the details and the payment "
        "plan, just reply to this email or call me; I am in the office every weekday.",
        "Kind regards from the whole sales team, and thank you again for your interest.",
    ]
)


def _spamassassin_rules(raw: bytes) -> tuple[set[str], str]:
    out = subprocess.run(
        ["spamassassin", "-L", "-t"], input=raw, capture_output=True, timeout=120, check=False
    ).stdout.decode(errors="replace")
    return set(re.findall(r"^\s*-?[\d.]+\s+([A-Z0-9_]+)\s", out, flags=re.M)), out[-2500:]


@pytest.mark.skipif(shutil.which("spamassassin") is None, reason="SpamAssassin not installed")
def test_E2_spamassassin_finds_nothing_mailops_caused(party: Party) -> None:
    """The rich mail (HTML document, prose alternative, QP, RFC 2231 names, Bcc) fires no
    rule but the set-up's and its content's; with a logo, only SpamAssassin's "an image in
    a short HTML mail" rule is added (what the sales person chose, not how it was written)."""
    no_logo = RICH.replace('<p><img src="cid:logo.png" alt="Northwind Homes" width="120"></p>', "")
    send_rich(party, body_html=no_logo.replace("<ul>", LETTER + "<ul>"), inline_images=[])
    send_rich(party, body_html=RICH.replace("<ul>", LETTER + "<ul>"))
    plain_raw, logo_raw = raw_messages(party, *party.customers["c-1"])
    fired, out = _spamassassin_rules(plain_raw)
    assert not (fired - SETUP_RULES - CONTENT_RULES), out
    fired, out = _spamassassin_rules(logo_raw)
    extra = fired - SETUP_RULES - CONTENT_RULES
    assert all(re.fullmatch(r"HTML_IMAGE_ONLY_\d+", r) for r in extra), out
